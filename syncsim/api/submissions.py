"""What a user may ask for in ``POST /api/sync``: the job types, their payload fields, and the bounds of each.

The runner can run any registered job type with any payload; a user must not. Every field of a submission is
checked against an allowlist here, and the OpenAPI description of the request is generated from the same
allowlist, so the two cannot disagree. :data:`USER_JOB_TYPES` is what a production server accepts: a Strava
sync in one of :data:`STRAVA_SYNC_MODES`. :data:`DEMO_JOB_TYPES` adds the built-in ``demo`` and ``noop`` types,
bounded, for a server started for a demo (``syncsim serve --demo``) and for tests.

A new user-facing option is one line here: a mode in :data:`STRAVA_SYNC_MODES`, a field in a
:class:`UserJobType`, or a server-wide extension with :meth:`SubmissionRules.with_fields` (the simulator's
detail syncs, for instance).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncsim import defaults
from syncsim.api.http import ApiError, json_int, json_type
from syncsim.defaults import MAX_ATTEMPTS_LIMIT

__all__ = [
    "DEMO_JOB_TYPES",
    "STRAVA_SYNC_MODES",
    "USER_JOB_TYPES",
    "Boolean",
    "Choice",
    "Integer",
    "Number",
    "PayloadField",
    "Submission",
    "SubmissionRules",
    "UserJobType",
]

#: The Strava sync modes a user may ask for (:data:`syncsim.strava.sync.MODES` says what each does). Every one
#: costs at most a full listing; a mode the sync gains is offered to users only once it is added here.
STRAVA_SYNC_MODES = ("auto", "full", "incremental", "reconcile")


class PayloadField:
    """One payload field a user may set: checks a JSON value and describes itself in JSON Schema."""

    def parse(self, value: object, *, name: str) -> object:
        """The value to store, or an :class:`ApiError` (422) saying what is allowed."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Choice(PayloadField):
    """One of a few strings."""

    choices: tuple[str, ...]

    def parse(self, value: object, *, name: str) -> object:
        if not isinstance(value, str) or value not in self.choices:
            shown = repr(value[:40]) if isinstance(value, str) else json_type(value)
            raise ApiError(422, f"{name} must be one of {', '.join(self.choices)}, got {shown}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Integer(PayloadField):
    """An integer within ``minimum..maximum``."""

    minimum: int
    maximum: int

    def parse(self, value: object, *, name: str) -> object:
        return json_int(value, name=name, minimum=self.minimum, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Number(PayloadField):
    """A finite number within ``minimum..maximum``."""

    minimum: float
    maximum: float

    def parse(self, value: object, *, name: str) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(422, f"{name} must be a number, got {json_type(value)}")
        if not (math.isfinite(value) and self.minimum <= value <= self.maximum):
            raise ApiError(422, f"{name} must be between {self.minimum:g} and {self.maximum:g}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Boolean(PayloadField):
    """``true`` or ``false``."""

    def parse(self, value: object, *, name: str) -> object:
        if not isinstance(value, bool):
            raise ApiError(422, f"{name} must be true or false, got {json_type(value)}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class UserJobType:
    """A job type users may submit, and the payload fields they may set (any other field is refused)."""

    type: str
    fields: Mapping[str, PayloadField] = field(default_factory=dict)
    description: str = ""

    def parse_payload(self, payload: object) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise ApiError(422, f"payload must be a JSON object, got {json_type(payload)}")
        unknown = sorted(set(payload) - set(self.fields))
        if unknown:
            allowed = ", ".join(sorted(self.fields)) or "none"
            names = ", ".join(repr(name[:40]) for name in unknown[:5])
            raise ApiError(422, f"payload field(s) not allowed for {self.type}: {names}; allowed: {allowed}")
        return {key: self.fields[key].parse(value, name=f"payload.{key}") for key, value in payload.items()}

    def payload_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {key: spec.schema() for key, spec in self.fields.items()},
        }


@dataclass(frozen=True, kw_only=True)
class Submission:
    """A checked ``POST /api/sync`` body: what to hand to the job service."""

    type: str
    payload: dict[str, Any]
    max_attempts: int


_SUBMIT_FIELDS = ("type", "payload", "maxAttempts")


@dataclass(frozen=True)
class SubmissionRules:
    """The job types a server accepts from users (see the module docstring)."""

    types: Mapping[str, UserJobType]

    @classmethod
    def of(cls, *types: UserJobType) -> SubmissionRules:
        return cls({t.type: t for t in types})

    def plus(self, *types: UserJobType) -> SubmissionRules:
        """These rules with more job types."""
        return SubmissionRules({**self.types, **{t.type: t for t in types}})

    def with_fields(self, job_type: str, **fields: PayloadField) -> SubmissionRules:
        """These rules with more payload fields allowed for ``job_type``."""
        base = self.types[job_type]
        extended = UserJobType(base.type, {**base.fields, **fields}, base.description)
        return SubmissionRules({**self.types, job_type: extended})

    def parse(self, body: Mapping[str, Any]) -> Submission:
        """A submission from a request body, or an :class:`ApiError` (422) naming the first thing wrong."""
        unknown = sorted(set(body) - set(_SUBMIT_FIELDS))
        if unknown:
            names = ", ".join(name[:40] for name in unknown[:5])
            raise ApiError(422, f"unknown field(s): {names}; allowed: {', '.join(_SUBMIT_FIELDS)}")
        job_type = body.get("type", defaults.JOB_TYPE)
        if not isinstance(job_type, str):
            raise ApiError(422, f"type must be a string, got {json_type(job_type)}")
        spec = self.types.get(job_type)
        if spec is None:
            raise ApiError(422, f"unknown job type {job_type[:40]!r}; allowed: {', '.join(sorted(self.types))}")
        payload = spec.parse_payload(body.get("payload", {}))
        max_attempts = json_int(
            body.get("maxAttempts", defaults.MAX_ATTEMPTS), name="maxAttempts", minimum=1, maximum=MAX_ATTEMPTS_LIMIT
        )
        return Submission(type=job_type, payload=payload, max_attempts=max_attempts)

    def schema(self) -> dict[str, Any]:
        """The request body's JSON Schema: one alternative per job type; ``type`` may be omitted for the
        default job type only."""
        max_attempts = {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_ATTEMPTS_LIMIT,
            "default": defaults.MAX_ATTEMPTS,
        }
        alternatives = []
        for name in sorted(self.types):
            spec = self.types[name]
            alternative: dict[str, Any] = {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "type": {"const": name},
                    "payload": spec.payload_schema(),
                    "maxAttempts": max_attempts,
                },
            }
            if spec.description:
                alternative["description"] = spec.description
            if name != defaults.JOB_TYPE:
                alternative["required"] = ["type"]
            alternatives.append(alternative)
        return alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}


#: What a production server accepts: a Strava sync of the user's own athlete, in one of the sync's modes.
#: (Fetching every activity's details costs ~200 Strava requests a page: an operator's choice, not a user's.)
USER_JOB_TYPES = SubmissionRules.of(
    UserJobType(
        defaults.JOB_TYPE,
        {"mode": Choice(STRAVA_SYNC_MODES)},
        "Sync the user's Strava activities; mode auto is incremental when activities are stored, else full;"
        " reconcile also removes what Strava no longer has.",
    ),
)

#: A demo server also runs the built-in demo jobs, bounded so that one cannot hold a background slot for more
#: than a few minutes or write checkpoints without pause for long.
DEMO_JOB_TYPES = USER_JOB_TYPES.plus(
    UserJobType(
        "demo",
        {"steps": Integer(0, 100), "step_s": Number(0.0, 5.0), "fail_attempts": Integer(0, MAX_ATTEMPTS_LIMIT)},
        "Steps of step_s seconds each, checkpointed; fails its first fail_attempts attempts (demo servers only).",
    ),
    UserJobType("noop", {}, "Does nothing (demo servers only)."),
)
