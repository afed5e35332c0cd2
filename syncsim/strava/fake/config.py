"""FakeStrava's configuration: how long it takes to answer (:class:`LatencyModel`) and what goes wrong
(:class:`Faults`)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from syncsim.errors import InvalidInput
from syncsim.options import from_options, is_number


@dataclass
class LatencyModel:
    """How long FakeStrava takes to answer, in seconds: ``median_s * exp(sigma * Z) + per_item_s * items``.

    The time runs from the request's arrival to the answer and includes the fake's own work (building a page),
    as a real server's latency includes its own.

    ``sigma = 0`` is a constant latency; otherwise lognormal with the given median, drawn from a generator
    seeded with ``seed``. Calibrate it from a real sync's trace with :meth:`from_latencies`.
    """

    median_s: float = 0.0
    sigma: float = 0.0
    per_item_s: float = 0.0
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not all(is_number(v) and v >= 0 for v in (self.median_s, self.sigma, self.per_item_s)):
            raise InvalidInput(
                f"latency parameters must be finite and >= 0, got median {self.median_s!r}, sigma {self.sigma!r}, "
                f"per item {self.per_item_s!r}"
            )
        self._rng = random.Random(self.seed)

    def sample(self, items: int = 0) -> float:
        """One request's latency in seconds for a response of ``items`` activities."""
        base = self.median_s
        if self.sigma > 0 and base > 0:
            base *= math.exp(self.sigma * self._rng.gauss(0.0, 1.0))
        return base + self.per_item_s * items

    @classmethod
    def from_latencies(cls, latencies_s: Iterable[float], *, seed: int = 0) -> LatencyModel:
        """Fit a lognormal (median, sigma of the log) to observed latencies in seconds, e.g. a Trace's."""
        logs = [math.log(x) for x in latencies_s if x > 0]
        if not logs:
            raise InvalidInput("no positive latencies to fit")
        sigma = statistics.pstdev(logs) if len(logs) > 1 else 0.0
        return cls(median_s=math.exp(statistics.median(logs)), sigma=sigma, seed=seed)


#: How a malformed page is broken: cut mid-stream, an item without its id, an object instead of a list.
MalformedMode = Literal["truncated_json", "missing_id", "not_a_list"]
MALFORMED_MODES: tuple[MalformedMode, ...] = ("truncated_json", "missing_id", "not_a_list")


@dataclass
class Faults:
    """What goes wrong, seeded by the FakeStrava's seed. Mutable: switch faults on and off at any time.

    Rates are fractions of requests in [0, 1]. ``malformed_pages`` is either a set of (athlete_id, page)
    pages that are always malformed (any list page holding the first activity of that page of the athlete's
    newest-first history), or a rate of activity-list pages malformed at random; ``malformed_mode``
    says how. ``short_pages`` is the fraction of non-final pages served with fewer than ``per_page`` items
    (every activity is still served exactly once). ``storm`` answers every API request with a 429 (until
    ``storm_until``, UTC epoch seconds, if set). ``revoke_at`` revokes an athlete's authorization once the
    clock passes the given time. A timeout holds the request past the client's read timeout in-process, or
    for ``hang_s`` seconds on loopback. ``down`` is an outage: every request from its first time to its second
    (UTC epoch seconds, the fake's clock) is answered 503 at once, the OAuth endpoints' included.
    ``failing_pages`` are (athlete_id, page) list pages, chosen as the named ``malformed_pages`` are, that Strava
    cannot serve: answered 500 every time, while everything else works (a bug on Strava's side, not an outage).
    """

    error_rate: float = 0.0
    timeout_rate: float = 0.0
    malformed_pages: set[tuple[int, int]] | float = field(default_factory=set)
    malformed_mode: MalformedMode = "truncated_json"
    short_pages: float = 0.0
    storm: bool = False
    storm_until: float | None = None
    revoke_at: dict[int, float] = field(default_factory=dict)
    hang_s: float = 30.0
    down: tuple[float, float] | None = None
    failing_pages: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        rates = {"error_rate": self.error_rate, "timeout_rate": self.timeout_rate, "short_pages": self.short_pages}
        if not isinstance(self.malformed_pages, set | frozenset):
            rates["malformed_pages"] = self.malformed_pages
        for name, rate in rates.items():
            if not (is_number(rate) and 0 <= rate <= 1):
                raise InvalidInput(f"faults: {name} must be a fraction of requests within 0..1, got {rate!r}")
        if not (is_number(self.hang_s) and self.hang_s > 0):
            raise InvalidInput(f"faults: hang_s must be a positive number of seconds, got {self.hang_s!r}")
        if self.malformed_mode not in MALFORMED_MODES:
            modes = ", ".join(MALFORMED_MODES)
            raise InvalidInput(f"faults: malformed_mode must be one of {modes}, got {self.malformed_mode!r}")


@dataclass(frozen=True, kw_only=True)
class Churn:
    """Athletes changing their histories while syncs run: uploads, edits and deletions, seeded.

    ``rate_per_hour`` changes per athlete per hour (a Poisson process). Each change is an upload with
    probability ``create_share`` — of those, ``late_share`` start in the past (a watch that syncs days later, a
    manual entry of last week's run), and of those ``tie_share`` in the very second of an existing activity —,
    an edit with probability ``edit_share``, else a deletion. Strava announces a change by webhook with
    probability ``webhook_share``; an announced webhook is lost on the way with probability ``drop_share``.
    FakeStrava stays the single source of truth for what each athlete has.
    """

    rate_per_hour: float = 1.0
    create_share: float = 0.4
    late_share: float = 0.5
    tie_share: float = 0.2
    edit_share: float = 0.3
    webhook_share: float = 1.0
    drop_share: float = 0.0

    def __post_init__(self) -> None:
        shares = (self.create_share, self.late_share, self.tie_share, self.edit_share, self.webhook_share)
        numbers = (self.rate_per_hour, *shares, self.drop_share)
        if not all(is_number(n) and n >= 0 for n in numbers) or not all(s <= 1 for s in (*shares, self.drop_share)):
            raise InvalidInput("churn: rate_per_hour must be >= 0 and every share within 0..1")
        if self.create_share + self.edit_share > 1:
            raise InvalidInput("churn: create_share + edit_share must be <= 1 (the rest are deletions)")

    @classmethod
    def parse(cls, spec: Churn | float | str | dict[str, float] | None) -> Churn | None:
        """A Churn from itself, a rate (changes per athlete per hour), ``"RATE"``, or a dict of its fields."""
        if spec is None or isinstance(spec, Churn):
            return spec
        if isinstance(spec, dict):
            return from_options(cls, spec, what="churn")
        try:
            rate = float(spec)
        except (TypeError, ValueError):
            raise InvalidInput(f"churn must be a rate (changes per athlete per hour), got {spec!r}") from None
        return cls(rate_per_hour=rate)
