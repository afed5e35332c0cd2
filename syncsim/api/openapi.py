"""The OpenAPI 3 description of syncsim's HTTP API (served at ``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from syncsim import defaults
from syncsim.defaults import MAX_ATTEMPTS_LIMIT, MAX_LIST_LIMIT
from syncsim.jobs.model import JobStatus

__all__ = ["openapi_document"]


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
    "401": _error("missing, malformed, badly signed or expired token"),
    "503": _error("store unavailable"),
}
_BODY_ERRORS = {
    "400": _error("malformed JSON, or a body that is not an object"),
    "413": _error("body larger than the limit"),
    "415": _error("body is not application/json"),
    "422": _error("a field of the wrong type or value, or an unknown job type"),
}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


def openapi_document() -> dict[str, Any]:
    """An OpenAPI 3.1 description of every route :func:`create_app` serves (a test keeps them in step)."""
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
                    "summary": "Start a sync (or return the user's active one)",
                    "security": bearer,
                    "requestBody": _body("SubmitRequest", required=False),
                    "responses": {
                        "202": _ok("the job row is written", "SubmitResponse"),
                        **_AUTH_ERRORS,
                        **_BODY_ERRORS,
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
                    "responses": {"200": _ok("jobs", "JobList"), "422": _error("bad limit"), **_AUTH_ERRORS},
                },
            },
            "/api/sync/{jobId}": {
                "get": {
                    "summary": "One job; under the resumable strategy a due job is continued by this poll",
                    "security": bearer,
                    "parameters": [{"name": "jobId", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": _ok("the job", "Job"),
                        "404": _error("unknown or malformed id, or another user's job"),
                        **_AUTH_ERRORS,
                    },
                },
            },
            "/api/strava/webhook": {
                "get": {
                    "summary": "Strava's subscription challenge",
                    "parameters": [
                        {"name": name, "in": "query", "required": True, "schema": {"type": "string"}}
                        for name in ("hub.mode", "hub.challenge", "hub.verify_token")
                    ],
                    "responses": {
                        "200": _ok("the challenge, echoed", "Challenge"),
                        "400": _error("not a subscribe challenge"),
                        "403": _error("wrong verify token"),
                        "503": _error("no verify token configured"),
                    },
                },
                "post": {
                    "summary": "A Strava event: new activity → sync; edit → re-read; delete → removed; deauthorization",
                    "requestBody": _body("WebhookEvent", required=True),
                    "responses": {
                        "200": _ok("accepted (handled in the background)", "Accepted"),
                        **_BODY_ERRORS,
                    },
                },
            },
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
                        "503": _error("Strava not configured, Strava's rate limit, or store unavailable"),
                    },
                },
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _ok("ok", "Health")}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI"}}}},
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "SubmitRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"type": "string", "default": defaults.JOB_TYPE},
                        "payload": {"type": "object", "default": {}},
                        "maxAttempts": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_ATTEMPTS_LIMIT,
                            "default": defaults.MAX_ATTEMPTS,
                        },
                    },
                },
                "SubmitResponse": {
                    "type": "object",
                    "required": ["jobId", "status", "created"],
                    "properties": {
                        "jobId": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "created": {
                            "type": "boolean",
                            "description": "false: the user's active job was returned",
                        },
                    },
                },
                "Status": {"type": "string", "enum": [s.value for s in JobStatus]},
                "Job": {
                    "type": "object",
                    "properties": {
                        "jobId": {"type": "string", "format": "uuid"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "type": {"type": "string"},
                        "attempts": {"type": "integer"},
                        "maxAttempts": {"type": "integer"},
                        "progress": {"type": "object"},
                        "result": {"type": ["object", "null"]},
                        "error": {"type": ["string", "null"]},
                        "createdAt": {"type": "string", "format": "date-time"},
                        "startedAt": _NULLABLE_TIME,
                        "completedAt": _NULLABLE_TIME,
                        "nextAttemptAt": _NULLABLE_TIME,
                        "runs": {
                            "type": "integer",
                            "description": "invocations or workers that picked the job up",
                        },
                    },
                },
                "JobList": {
                    "type": "object",
                    "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
                },
                "Challenge": {"type": "object", "properties": {"hub.challenge": {"type": "string"}}},
                "WebhookEvent": {
                    "type": "object",
                    "required": ["object_type", "object_id", "aspect_type", "owner_id"],
                    "properties": {
                        "object_type": {"type": "string", "enum": ["activity", "athlete"]},
                        "object_id": {"type": "integer"},
                        "aspect_type": {"type": "string", "enum": ["create", "update", "delete"]},
                        "updates": {"type": "object"},
                        "owner_id": {"type": "integer"},
                        "subscription_id": {"type": "integer"},
                        "event_time": {"type": "integer"},
                    },
                },
                "Accepted": {"type": "object", "properties": {"status": {"enum": ["accepted", "ignored"]}}},
                "ConnectRequest": {
                    "type": "object",
                    "required": ["code"],
                    "properties": {"code": {"type": "string"}},
                },
                "ConnectResponse": {"type": "object", "properties": {"athleteId": {"type": "integer"}}},
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"const": "ok"},
                        "store": {"type": "string"},
                        "platform": {"type": "string"},
                        "strategy": {"type": "string"},
                    },
                },
            },
        },
    }
