"""The OpenAPI 3 description of syncsim's HTTP API (served at ``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from syncsim.api.strava import MAX_CODE_CHARS, MAX_STRAVA_ID
from syncsim.api.submissions import USER_JOB_TYPES, SubmissionRules
from syncsim.defaults import MAX_LIST_LIMIT
from syncsim.jobs.model import JobStatus

__all__ = ["CODE_PATTERN", "openapi_document"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(description: str, schema: str) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _body(schema: str, *, required: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"required": required, "content": {"application/json": {"schema": ref}}}


_AUTH_ERRORS = {
    "401": {
        **_error("missing, malformed, badly signed or expired token"),
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}},
    },
    "503": _error("the job store is unavailable"),
}
_BODY_ERRORS = {
    "400": _error("malformed JSON, a body that is not an object, a client that hung up mid-body, or a query parameter"),
    "413": _error("body larger than the limit"),
    "415": _error("body is not application/json"),
    "422": _error("a field of the wrong type or value, or one that is not allowed"),
}
#: Any request still running at its invocation's deadline (a platform with a time limit) is answered 504.
_DEADLINE = {"504": _error("the request did not finish within the platform's time limit")}
_UNKNOWN_QUERY = {"400": _error("a query parameter this route does not take")}
#: The webhook callback path's secret (``$STRAVA_WEBHOOK_SECRET``).
_SECRET = {"name": "secret", "in": "path", "required": True, "schema": {"type": "string"}}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_JOB_ID = {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_STRAVA_ID = {"type": "integer", "minimum": 1, "maximum": MAX_STRAVA_ID}
#: What connect's ``code`` must contain: a character other than the ASCII whitespace it is trimmed of.
CODE_PATTERN = "[^\\t\\n\\v\\f\\r ]"


def _webhook(*path_parameters: dict[str, Any]) -> dict[str, Any]:
    """Strava's webhook callback: its subscription challenge and its events, on the plain path or the secret one
    (``path_parameters``: the secret's)."""
    challenge = [
        {"name": "hub.mode", "in": "query", "required": True, "schema": {"type": "string", "enum": ["subscribe"]}},
        {"name": "hub.challenge", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}},
        {"name": "hub.verify_token", "in": "query", "required": True, "schema": {"type": "string"}},
    ]
    post: dict[str, Any] = {
        "summary": "A Strava event: the activity is re-read by id; a deauthorization is confirmed with Strava",
        **({"parameters": list(path_parameters)} if path_parameters else {}),
        "requestBody": _body("WebhookEvent", required=True),
        "responses": {
            "200": _ok("the same answer for every well-formed event (acted on in the background, or not)", "Accepted"),
            **_BODY_ERRORS,
            **_DEADLINE,
        },
    }
    return {
        "get": {
            "summary": "Strava's subscription challenge" + (", on the secret callback path" if path_parameters else ""),
            "parameters": [*path_parameters, *challenge],
            "responses": {
                "200": _ok("the challenge, echoed", "Challenge"),
                "400": _error("not a subscribe challenge, no challenge, or another query parameter"),
                "403": _error("wrong verify token"),
                "503": _error("no verify token configured"),
                **_DEADLINE,
            },
        },
        "post": post,
    }


_TICK: dict[str, Any] = {
    "summary": "Keep every job moving: reclaim expired leases, continue due jobs until the deadline margin",
    "security": [{"cronSecret": []}],
    "responses": {
        "200": {
            "description": "what this tick did, and what is still due",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TickSummary"}}},
        },
        "400": {
            "description": "a query parameter this route does not take",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
        "401": {
            "description": "missing or wrong bearer (the same answer whatever the queue holds)",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
        "503": {
            "description": "no tick secret configured, or the job store unavailable",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
        "504": {
            "description": "the request did not finish within the platform's time limit",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    },
}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    """A response object: exactly these properties, all present unless ``required`` says otherwise."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties) if required is None else required,
        "properties": properties,
    }


def openapi_document(job_types: SubmissionRules = USER_JOB_TYPES) -> dict[str, Any]:
    """An OpenAPI 3.1 description of every route :func:`create_app` serves, for a server that accepts
    ``job_types`` (tests keep the two in step, and fuzz the app against it)."""
    bearer: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "syncsim",
            "version": "0.1.0",
            "description": "Background Strava syncs: 202 at once, then poll the job until it is final.",
        },
        "paths": {
            "/api/sync": {
                "post": {
                    "summary": "Start a sync (or return the user's active job of that type)",
                    "security": bearer,
                    "requestBody": _body("SubmitRequest", required=False),
                    "responses": {
                        "202": {
                            **_ok("the job row is written", "SubmitResponse"),
                            "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
                        },
                        **_AUTH_ERRORS,
                        **_BODY_ERRORS,
                        **_DEADLINE,
                    },
                },
                "get": {
                    "summary": "The user's recent jobs, newest first",
                    "security": bearer,
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
                        }
                    ],
                    "responses": {
                        "200": _ok("jobs", "JobList"),
                        "400": _error("limit is not an integer in range, or another query parameter"),
                        **_AUTH_ERRORS,
                        **_DEADLINE,
                    },
                },
            },
            "/api/sync/{jobId}": {
                "get": {
                    "summary": "One job; under the resumable strategy a due job is continued by this poll",
                    "security": bearer,
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _ok("the job", "Job"),
                        **_UNKNOWN_QUERY,
                        "404": _error("unknown or malformed id, or another user's job"),
                        **_AUTH_ERRORS,
                        **_DEADLINE,
                    },
                },
                "delete": {
                    "summary": "Cancel the user's pending or running job: it ends failed, 'cancelled by the user'",
                    "security": bearer,
                    "parameters": [_JOB_ID],
                    "responses": {
                        "200": _ok("the cancelled job", "Job"),
                        **_UNKNOWN_QUERY,
                        "404": _error("unknown or malformed id, or another user's job"),
                        "409": _error("the job is already completed or failed"),
                        **_AUTH_ERRORS,
                        **_DEADLINE,
                    },
                },
            },
            "/api/strava/webhook": _webhook(),
            "/api/strava/webhook/{secret}": _webhook(_SECRET),
            "/api/strava/connect": {
                "post": {
                    "summary": "Exchange an OAuth authorization code; the tokens are stored server-side only",
                    "security": bearer,
                    "requestBody": _body("ConnectRequest", required=True),
                    "responses": {
                        "200": _ok("connected", "ConnectResponse"),
                        **_AUTH_ERRORS,
                        **_BODY_ERRORS,
                        "400": _error("malformed body, or Strava refused the code"),
                        "502": _error("Strava unavailable"),
                        "503": _error("Strava not configured, Strava's rate limit, or the job store unavailable"),
                        **_DEADLINE,
                    },
                },
            },
            "/api/cron/tick": {"get": _TICK, "post": _TICK},
            "/healthz": {
                "get": {
                    "summary": "Whether this server can reach its job store (no connection details)",
                    "responses": {
                        "200": _ok("the store answers", "Health"),
                        **_UNKNOWN_QUERY,
                        "503": _error("the job store is unavailable"),
                        **_DEADLINE,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI", "content": {"application/json": {}}},
                        **_UNKNOWN_QUERY,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cronSecret": {"type": "http", "scheme": "bearer", "description": "the tick's $CRON_SECRET"},
            },
            "schemas": {
                "Error": _object({"error": {"type": "string", "minLength": 1}}),
                "SubmitRequest": job_types.schema(),
                "SubmitResponse": _object(
                    {
                        "jobId": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "created": {
                            "type": "boolean",
                            "description": "false: the user's active job was returned",
                        },
                    }
                ),
                "Status": {"type": "string", "enum": [s.value for s in JobStatus]},
                "Job": _object(
                    {
                        "jobId": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "type": {"type": "string"},
                        "attempts": {"type": "integer", "minimum": 0},
                        "maxAttempts": {"type": "integer", "minimum": 1},
                        "progress": {"type": "object"},
                        "result": {"type": ["object", "null"]},
                        "error": {"type": ["string", "null"]},
                        "createdAt": {"type": "string", "format": "date-time"},
                        "startedAt": _NULLABLE_TIME,
                        "completedAt": _NULLABLE_TIME,
                        "nextAttemptAt": _NULLABLE_TIME,
                        "runs": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "invocations or workers that picked the job up",
                        },
                    }
                ),
                "JobList": _object({"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}),
                "Challenge": _object({"hub.challenge": {"type": "string", "minLength": 1}}),
                "WebhookEvent": {
                    "type": "object",
                    "description": "Fields beyond these are ignored.",
                    "required": ["object_type", "object_id", "aspect_type", "owner_id"],
                    "properties": {
                        "object_type": {"type": "string", "enum": ["activity", "athlete"]},
                        "object_id": _STRAVA_ID,
                        "aspect_type": {"type": "string", "enum": ["create", "update", "delete"]},
                        "updates": {"type": "object"},
                        "owner_id": _STRAVA_ID,
                        "subscription_id": _STRAVA_ID,
                        "event_time": {"type": "integer", "minimum": 0, "maximum": MAX_STRAVA_ID},
                    },
                },
                "Accepted": _object({"status": {"type": "string", "enum": ["accepted"]}}),
                "ConnectRequest": {
                    "type": "object",
                    "required": ["code"],
                    "properties": {
                        "code": {"type": "string", "minLength": 1, "maxLength": MAX_CODE_CHARS, "pattern": CODE_PATTERN}
                    },
                },
                "ConnectResponse": _object({"athleteId": {"type": "integer"}}),
                "TickSummary": _object(
                    {
                        "continued": {"type": "integer", "minimum": 0},
                        "completed": {"type": "integer", "minimum": 0},
                        "failed": {"type": "integer", "minimum": 0},
                        "reclaimed": {"type": "integer", "minimum": 0},
                        "stillDue": {"type": "integer", "minimum": 0},
                        "nextDueAt": _NULLABLE_TIME,
                        "paused": {
                            "type": "array",
                            "items": _object(
                                {
                                    "type": {"type": "string"},
                                    "until": {"type": "string", "format": "date-time"},
                                    "reason": {"type": "string"},
                                }
                            ),
                        },
                        "eventJobs": {"type": "integer", "minimum": 0},
                        "reconciles": {"type": "integer", "minimum": 0},
                    },
                    required=["continued", "completed", "failed", "reclaimed", "stillDue", "nextDueAt", "paused"],
                ),
                "Health": _object(
                    {
                        "status": {"const": "ok"},
                        "platform": {"type": "string"},
                        "strategy": {"type": "string"},
                    }
                ),
            },
        },
    }
