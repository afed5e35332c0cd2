"""The API's Strava routes: the webhook (subscription challenge, events) and the OAuth connect.

:class:`StravaRoutes` answers ``GET|POST /api/strava/webhook`` and ``POST /api/strava/connect``. A webhook
event is checked and reduced to its documented fields (:func:`_parse_event`), answered at once, and handled
after the answer, in the invocation's background work: a new activity submits an incremental sync for the
athlete's user, an edited one is re-read from Strava and stored, a deleted one is removed, and an athlete's
deauthorization removes their tokens and ends their pending jobs. Connect trades an OAuth code for tokens
through a :class:`StravaConnector`; the tokens are stored, never echoed. This module logs as
``syncsim.api``, like the rest of the API.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from syncsim import defaults
from syncsim.api.http import ApiError, RequestReader, json_int, json_response, json_type, one_line, only_query
from syncsim.clock import Clock
from syncsim.errors import ConfigError, InvocationKilled, SyncsimError
from syncsim.jobs.service import JobService
from syncsim.platforms.invocation import Invocation, guard_store
from syncsim.stores.protocol import Store
from syncsim.strava.models import Activity

__all__ = [
    "DEAUTHORIZED_REASON",
    "MAX_CODE_CHARS",
    "MAX_STRAVA_ID",
    "WEBHOOK_SUBSCRIPTION_ENV",
    "WEBHOOK_VERIFY_TOKEN_ENV",
    "StravaConnector",
    "StravaRoutes",
]

log = logging.getLogger("syncsim.api")

#: An OAuth authorization code is ~40 characters; anything much longer is not one.
MAX_CODE_CHARS = 512
#: Strava's ids and times are 64-bit integers, as every store keeps them (``bigint``, SQLite's INTEGER): a larger
#: one is refused when the event is read, not by the store after the 200.
MAX_STRAVA_ID = 2**63 - 1
#: What a pasted code is trimmed of: ASCII whitespace, as the OpenAPI pattern of ``code`` says.
_ASCII_SPACE = " \t\n\v\f\r"
WEBHOOK_VERIFY_TOKEN_ENV = "STRAVA_WEBHOOK_VERIFY_TOKEN"
WEBHOOK_SUBSCRIPTION_ENV = "STRAVA_WEBHOOK_SUBSCRIPTION_ID"
DEAUTHORIZED_REASON = "athlete deauthorized on Strava"
#: The event's integer fields and their smallest values; ``object_id`` and ``owner_id`` are required, the others
#: may be left out but are never ``null``.
_EVENT_INTEGERS = {"object_id": 1, "owner_id": 1, "subscription_id": 1, "event_time": 0}
_EVENT_FIELDS = (
    "object_type",
    "object_id",
    "aspect_type",
    "updates",
    "owner_id",
    "subscription_id",
    "event_time",
)


class StravaConnector(Protocol):
    """What the Strava routes need: trade an OAuth code for tokens and store them for the user (connect), and
    read one activity as the user (a webhook's ``activity/update``)."""

    async def exchange_code(self, user_id: uuid.UUID, code: str) -> Any:
        """Returns the saved tokens (anything with an ``athlete_id``)."""
        ...

    async def get_activity(self, user_id: uuid.UUID, activity_id: int, *, deadline: float | None = None) -> Activity:
        """``GET /activities/{id}``, parsed."""
        ...


class StravaRoutes:
    """``/api/strava/webhook`` and ``/api/strava/connect`` (see the module docstring)."""

    def __init__(
        self,
        *,
        service: JobService,
        reader: RequestReader,
        clock: Clock,
        strava: StravaConnector | None,
        webhook_verify_token: str | None,
        webhook_subscription_id: int | None,
    ) -> None:
        self.service = service
        self.reader = reader
        self.clock = clock
        self.strava = strava
        self.webhook_verify_token = webhook_verify_token
        self.webhook_subscription_id = webhook_subscription_id

    @property
    def store(self) -> Store:
        return self.service.runner.store

    async def webhook(self, request: Request) -> Response:
        if request.method == "GET":
            return self._webhook_challenge(request)
        return await self._webhook_event(request)

    def _webhook_challenge(self, request: Request) -> Response:
        if not self.webhook_verify_token:
            raise ConfigError(f"the webhook verify token is not configured (set {WEBHOOK_VERIFY_TOKEN_ENV})")
        only_query(request, "hub.mode", "hub.challenge", "hub.verify_token")
        params = request.query_params
        if params.get("hub.mode") != "subscribe":
            raise ApiError(400, "hub.mode must be 'subscribe'")
        challenge = params.get("hub.challenge")
        if not challenge:
            raise ApiError(400, "hub.challenge is missing")
        given = params.get("hub.verify_token", "")
        if not hmac.compare_digest(given.encode(), self.webhook_verify_token.encode()):
            raise ApiError(403, "hub.verify_token does not match")
        return json_response({"hub.challenge": challenge})

    async def _webhook_event(self, request: Request) -> Response:
        only_query(request)
        event = _parse_event(await self.reader.json_body(request, required=True) or {})
        if self.webhook_subscription_id is not None and event.get("subscription_id") != self.webhook_subscription_id:
            log.warning("webhook event for another subscription ignored")
            return json_response({"status": "ignored"})
        invocation = self.reader.invocation(request)
        kind = f"{event['object_type']}/{event['aspect_type']}"
        invocation.wait_until(self._handle_event(event, invocation), label=f"webhook {kind} {event['object_id']}")
        return json_response({"status": "accepted"})

    async def _handle_event(self, event: dict[str, Any], invocation: Invocation) -> None:
        """The work behind a webhook event, after its 200: look up the user, then sync or disconnect."""
        store = guard_store(self.store, invocation)
        kind = f"{event['object_type']}/{event['aspect_type']}"
        try:
            user = await store.user_for_athlete(event["owner_id"])
            if user is None:
                log.info("webhook %s for an unknown athlete ignored", kind)
                return
            if event["object_type"] == "athlete":
                if str(event["updates"].get("authorized", "")).lower() == "false":
                    await store.delete_tokens(user)
                    ended = await store.cancel_user_jobs(user, reason=DEAUTHORIZED_REASON, now=self.clock.now())
                    log.info("athlete deauthorized: tokens removed, %d pending job(s) ended", ended)
                return
            if event["object_type"] == "activity" and event["aspect_type"] in ("update", "delete"):
                await self._apply_activity_change(store, user, event, invocation)
                return
            job, created = await self.service.submit(
                user, {"mode": "incremental", "trigger": event}, invocation=invocation, type=defaults.JOB_TYPE
            )
            log.info("webhook %s -> job %s (%s)", kind, job.id, "new" if created else "already active")
        except InvocationKilled:
            raise
        except SyncsimError as exc:
            log.warning("webhook %s not handled: %s: %s", kind, type(exc).__name__, one_line(str(exc)))

    async def _apply_activity_change(
        self, store: Store, user: uuid.UUID, event: dict[str, Any], invocation: Invocation
    ) -> None:
        """An edited or deleted activity: an incremental sync asks only for activities newer than the newest one
        stored, so it would never see these. A deletion removes the row. An edit re-reads the activity from
        Strava (one request) and stores it if it lies within what was synced (not newer than the newest stored
        start): storing a newer one would move the next incremental sync's ``after`` past activities not yet
        fetched. Newer ones are left to the user's sync."""
        activity_id = int(event["object_id"])
        if event["aspect_type"] == "delete":
            removed = await store.delete_activity(user, activity_id)
            log.info("webhook activity/delete: %s", "removed" if removed else "not stored, nothing to remove")
            return
        if self.strava is None:
            raise ConfigError("Strava is not configured on this server")
        activity = await self.strava.get_activity(user, activity_id, deadline=invocation.deadline)
        latest = await store.latest_activity_start(user)
        if latest is None or activity.start_date > latest:
            log.info("webhook activity/update: newer than what was synced, left to the user's sync")
            return
        await store.upsert_activities(user, [activity], now=self.clock.now())
        log.info("webhook activity/update: re-read from Strava and stored")

    async def connect(self, request: Request) -> Response:
        user = self.reader.user(request)
        only_query(request)
        body = await self.reader.json_body(request, required=True) or {}
        code = body.get("code")
        if not isinstance(code, str) or not code.strip(_ASCII_SPACE) or len(code) > MAX_CODE_CHARS:
            raise ApiError(422, f"code must be a non-empty string of at most {MAX_CODE_CHARS} characters")
        if self.strava is None:
            raise ConfigError("Strava is not configured on this server")
        tokens = await self.strava.exchange_code(user, code.strip(_ASCII_SPACE))
        return json_response({"athleteId": tokens.athlete_id})


def _parse_event(body: dict[str, Any]) -> dict[str, Any]:
    """A Strava webhook event, checked and reduced to its documented fields (nothing else is kept)."""
    object_type = body.get("object_type")
    if object_type not in ("activity", "athlete"):
        raise ApiError(422, "object_type must be 'activity' or 'athlete'")
    if body.get("aspect_type") not in ("create", "update", "delete"):
        raise ApiError(422, "aspect_type must be 'create', 'update' or 'delete'")
    event: dict[str, Any] = {"object_type": object_type, "aspect_type": body["aspect_type"]}
    for key, minimum in _EVENT_INTEGERS.items():
        if key in body or key in ("object_id", "owner_id"):
            event[key] = json_int(body.get(key), name=key, minimum=minimum, maximum=MAX_STRAVA_ID)
        else:
            event[key] = None
    updates = body.get("updates", {})
    if not isinstance(updates, dict):
        raise ApiError(422, f"updates must be a JSON object, got {json_type(updates)}")
    event["updates"] = updates
    return {key: event[key] for key in _EVENT_FIELDS}
