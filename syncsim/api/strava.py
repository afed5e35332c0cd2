"""The API's Strava routes: the webhook (subscription challenge, events) and the OAuth connect.

:class:`StravaRoutes` answers ``GET|POST /api/strava/webhook[/<secret>]`` and ``POST /api/strava/connect``.

Strava's webhook events are unsigned, so the webhook trusts none of them: it is given an unguessable callback
path (``/api/strava/webhook/<secret>``, the secret from ``$STRAVA_WEBHOOK_SECRET``, given to Strava when
subscribing); every event it receives gets the same answer whatever is wrong with it (another path, another
subscription, an unknown athlete); and what it does is only ever to ask Strava. An activity event
(``create``, ``update`` or ``delete``) records the activity's id and submits the ``strava_events`` job for the
athlete's user (:mod:`syncsim.strava.events`), which re-reads it by id (deduplicated, and throttled per
athlete); an athlete's deauthorization removes their tokens and ends their pending jobs only once Strava
refuses a refresh of their token. Connect trades an OAuth code for tokens through a :class:`StravaConnector`;
the tokens are stored, never echoed. This module logs as
``syncsim.api``, like the rest of the API.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import uuid
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from syncsim import defaults
from syncsim.api.http import ApiError, RequestReader, json_int, json_response, json_type, one_line, only_query
from syncsim.clock import Clock
from syncsim.errors import ConfigError, InvocationKilled, StoreUnavailable, SyncsimError
from syncsim.jobs.service import JobService
from syncsim.platforms.invocation import Invocation, guard_store
from syncsim.stores.protocol import Store
from syncsim.strava.events import EVENTS_JOB_TYPE
from syncsim.strava.ratelimit import quarter_hour_start

__all__ = [
    "DEAUTHORIZED_REASON",
    "MAX_CODE_CHARS",
    "MAX_STRAVA_ID",
    "WEBHOOK_SECRET_ENV",
    "WEBHOOK_STORE_S",
    "WEBHOOK_SUBSCRIPTION_ENV",
    "WEBHOOK_VERIFY_TOKEN_ENV",
    "StravaConnector",
    "StravaRoutes",
]

log = logging.getLogger("syncsim.api")

#: How long the webhook waits for the store before its answer (seconds): Strava counts an answer after 2 s as a
#: failed delivery, and resends only what it has counted failed.
WEBHOOK_STORE_S = 1.5
#: An OAuth authorization code is ~40 characters; anything much longer is not one.
MAX_CODE_CHARS = 512
#: Strava's ids and times are 64-bit integers, as every store keeps them (``bigint``, SQLite's INTEGER): a larger
#: one is refused when the event is read, not by the store after the 200.
MAX_STRAVA_ID = 2**63 - 1
#: What a pasted code is trimmed of: ASCII whitespace, as the OpenAPI pattern of ``code`` says.
_ASCII_SPACE = " \t\n\v\f\r"
WEBHOOK_VERIFY_TOKEN_ENV = "STRAVA_WEBHOOK_VERIFY_TOKEN"
#: The secret path segment of the webhook's callback URL (``/api/strava/webhook/<secret>``).
WEBHOOK_SECRET_ENV = "STRAVA_WEBHOOK_SECRET"
#: A webhook secret this short could be guessed; Strava's callback URLs may be long.
MIN_WEBHOOK_SECRET_CHARS = 16
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
    """What the Strava routes need: trade an OAuth code for tokens and store them for the user (connect), ask
    Strava whether an athlete revoked the app, and forget a user's tokens (a confirmed deauthorization)."""

    async def exchange_code(self, user_id: uuid.UUID, code: str) -> Any:
        """Returns the saved tokens (anything with an ``athlete_id``)."""
        ...

    async def authorization_revoked(self, user_id: uuid.UUID, *, deadline: float | None = None) -> bool:
        """Whether Strava refuses a refresh of the user's token (the athlete revoked the app)."""
        ...

    def forget(self, user_id: uuid.UUID) -> None:
        """Drop what the connector remembers of the user's tokens."""
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
        webhook_secret: str | None = None,
    ) -> None:
        """``webhook_secret``: the callback path's secret; without one, ``/api/strava/webhook`` itself takes
        events (a guessable callback URL: set one in production)."""
        if webhook_secret is not None and len(webhook_secret) < MIN_WEBHOOK_SECRET_CHARS:
            raise ConfigError(f"{WEBHOOK_SECRET_ENV} must be at least {MIN_WEBHOOK_SECRET_CHARS} characters")
        self.service = service
        self.reader = reader
        self.clock = clock
        self.strava = strava
        self.webhook_verify_token = webhook_verify_token
        self.webhook_subscription_id = webhook_subscription_id
        self.webhook_secret = webhook_secret

    @property
    def store(self) -> Store:
        return self.service.runner.store

    async def webhook(self, request: Request) -> Response:
        """``/api/strava/webhook`` and ``/api/strava/webhook/{secret}``: Strava's challenge, or an event."""
        given = request.path_params.get("secret")
        expected = self.webhook_secret
        # Compared as UTF-8 bytes: compare_digest refuses str with non-ASCII characters (a path may have them).
        authentic = (
            given is None
            if expected is None
            else given is not None and hmac.compare_digest(given.encode(), expected.encode())
        )
        if request.method == "GET":
            if not authentic:  # a subscription to this path would be accepted and its events all dropped
                raise ApiError(403, "this is not the webhook's callback path (see STRAVA_WEBHOOK_SECRET)")
            return self._webhook_challenge(request)
        return await self._webhook_event(request, authentic=authentic)

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

    async def _webhook_event(self, request: Request, *, authentic: bool) -> Response:
        """Every well-formed event gets the same answer; whether it is acted on is decided after it."""
        only_query(request)
        event = _parse_event(await self.reader.json_body(request, required=True) or {})
        subscription = self.webhook_subscription_id
        if not authentic:
            log.info("webhook event on a path without the callback secret dropped")
        elif subscription is not None and event.get("subscription_id") != subscription:
            log.info("webhook event for another subscription dropped")
        else:
            invocation = self.reader.invocation(request)
            kind = f"{event['object_type']}/{event['aspect_type']}"
            label = f"webhook {kind} {event['object_id']}"
            deauthorization = event["object_type"] == "athlete" and _deauthorizes(event)
            if event["object_type"] == "activity" or deauthorization:
                # Looked up (and an activity's event recorded) before the answer: a store that cannot answer makes it
                # a 503, and Strava sends the event again (up to three attempts); one answered 200 and then lost
                # would wait for the next reconcile, or (a deauthorization) leave the athlete's tokens stored.
                user = await self._before_answer(event, invocation, kind)
                if user is None:
                    log.info("webhook %s for an unknown athlete dropped", kind)
                elif deauthorization:
                    invocation.wait_until(self._confirm_deauthorization(user, invocation), label=label)
                else:
                    invocation.wait_until(self._submit_events(user, kind, invocation), label=label)
            else:
                log.info("webhook %s: nothing to do", kind)
        return json_response({"status": "accepted"})

    async def _before_answer(self, event: dict[str, Any], invocation: Invocation, kind: str) -> uuid.UUID | None:
        """The event's user, and an activity event recorded, within :data:`WEBHOOK_STORE_S`: Strava counts an
        answer later than 2 s as a failed delivery, so a store too slow to answer in time is a 503 now, not a 503
        after the store's own timeout (5 s), which Strava would no longer be waiting for."""
        store = guard_store(self.store, invocation)
        try:
            async with asyncio.timeout(WEBHOOK_STORE_S):
                user = await store.user_for_athlete(event["owner_id"])
                if user is not None and event["object_type"] == "activity":
                    await store.add_activity_events(user, [int(event["object_id"])], now=self.clock.now())
        except TimeoutError:
            raise StoreUnavailable(
                f"webhook {kind}: the store did not answer within {WEBHOOK_STORE_S:g} s (Strava waits 2 s)"
            ) from None
        return user

    async def _submit_events(self, user: uuid.UUID, kind: str, invocation: Invocation) -> None:
        """After the answer: start the user's ``strava_events`` job, which re-reads the recorded activity (the
        upkeep submits it later if this fails)."""
        try:
            job, created = await self.service.submit(user, {}, invocation=invocation, type=EVENTS_JOB_TYPE)
            log.info("webhook %s -> job %s (%s)", kind, job.id, "new" if created else "already active")
        except InvocationKilled:
            raise
        except SyncsimError as exc:
            log.warning(
                "webhook %s recorded, its job not started: %s: %s", kind, type(exc).__name__, one_line(str(exc))
            )

    async def _confirm_deauthorization(self, user: uuid.UUID, invocation: Invocation) -> None:
        """After the answer: confirm a deauthorization with Strava (a refresh it refuses), with the invocation's
        whole deadline: a refresh cut short could lose a token Strava granted, and disconnect an athlete who
        never left."""
        try:
            await self._deauthorize(guard_store(self.store, invocation), user, invocation)
        except InvocationKilled:
            raise
        except SyncsimError as exc:
            log.warning("webhook athlete/update not handled: %s: %s", type(exc).__name__, one_line(str(exc)))

    async def _deauthorize(self, store: Store, user: uuid.UUID, invocation: Invocation) -> None:
        """An athlete's deauthorization, once Strava confirms it (it refuses a refresh of their token): their
        tokens are removed and their pending jobs ended. Confirmations spend the athlete's webhook quota, so a
        flood of forged deauthorizations cannot spend the app's budget either."""
        if self.strava is None:
            raise ConfigError("Strava is not configured on this server: a deauthorization cannot be confirmed")
        now = self.clock.now()
        window = quarter_hour_start(now)
        if not await store.take_event_quota(user, window=window, limit=defaults.WEBHOOK_READS_PER_WINDOW, wanted=1):
            log.warning(
                "webhook athlete/update: this athlete's deauthorizations this quarter hour are throttled; dropped"
            )
            return
        if not await self.strava.authorization_revoked(user, deadline=invocation.deadline):
            log.warning("webhook athlete/update: Strava still authorizes this athlete; deauthorization dropped")
            return
        await store.delete_tokens(user)
        self.strava.forget(user)
        ended = await store.cancel_user_jobs(user, reason=DEAUTHORIZED_REASON, now=self.clock.now())
        log.info("athlete deauthorized (confirmed with Strava): tokens removed, %d pending job(s) ended", ended)

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


def _deauthorizes(event: dict[str, Any]) -> bool:
    """Whether an athlete event says the athlete deauthorized the app (``updates: {"authorized": "false"}``)."""
    return str(event["updates"].get("authorized", "")).lower() == "false"
