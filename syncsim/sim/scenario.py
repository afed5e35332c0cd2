"""A simulation's parameters as one picklable value (so ``compare`` can ship it to worker processes)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from syncsim import defaults
from syncsim.errors import InvalidInput
from syncsim.jobs.runner import resolve_strategy
from syncsim.options import from_options, is_whole, whole
from syncsim.platforms import PlatformSpec, platform_spec
from syncsim.sim.browser import PollSchedule
from syncsim.sim.workload import Workload, check_memory, run_memory_bytes
from syncsim.strava.fake import Churn, Faults, LatencyModel
from syncsim.strava.ratelimit import QUARTER_HOUR_S

__all__ = ["APPROVED_APP_LIMITS", "STRAVA_DEFAULT_LIMITS", "RateLimits", "Scenario", "parse_latency"]


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Strava's app-wide limits: (requests per 15 min, requests per UTC day) for reads and for all requests."""

    read: tuple[int, int] = (100, 1_000)
    overall: tuple[int, int] = (200, 2_000)

    def __post_init__(self) -> None:
        for name, pair in (("read", self.read), ("overall", self.overall)):
            if not (
                isinstance(pair, tuple) and len(pair) == 2 and all(map(is_whole, pair)) and 1 <= pair[0] <= pair[1]
            ):
                raise InvalidInput(
                    f"rate_limits: {name} limits must be whole numbers with 1 <= per 15 min <= per day, got {pair!r}"
                )

    @classmethod
    def resolve(cls, spec: RateLimits | str | tuple[int, int] | dict[str, Any] | None) -> RateLimits:
        """``None``/``"default"`` (Strava's defaults), ``"approved"``, ``(read_15min, read_day)``, or a dict."""
        if spec is None or spec == "default":
            return STRAVA_DEFAULT_LIMITS
        if spec == "approved":
            return APPROVED_APP_LIMITS
        if isinstance(spec, RateLimits):
            return spec
        if isinstance(spec, tuple | list) and len(spec) == 2:
            read = _pair("read", spec)
            return cls(read=read, overall=(2 * read[0], 2 * read[1]))
        if isinstance(spec, dict):
            unknown = sorted(str(key) for key in spec if key not in ("read", "overall"))
            if unknown:
                raise InvalidInput(f"unknown rate_limits field(s) {', '.join(unknown)}; known: overall, read")
            read = _pair("read", spec.get("read", (100, 1_000)))
            return cls(read=read, overall=_pair("overall", spec.get("overall", (2 * read[0], 2 * read[1]))))
        raise InvalidInput(f"rate_limits must be 'default', 'approved', (read_15min, read_day) or a dict: {spec!r}")


def _pair(name: str, spec: object) -> tuple[int, int]:
    """(per 15 min, per day) as whole numbers; 1.5 requests or "100" is a mistake, not a limit to round."""
    if not (isinstance(spec, tuple | list) and len(spec) == 2 and all(map(is_whole, spec))):
        raise InvalidInput(f"rate_limits: {name} must be two whole numbers (per 15 min, per day), got {spec!r}")
    return (spec[0], spec[1])


#: The athletes of a seeded launch when neither a workload nor a number of athletes is given.
DEFAULT_ATHLETES = 100

#: Strava's documented defaults for a new application.
STRAVA_DEFAULT_LIMITS = RateLimits()
#: A raised tier like the ones Strava grants approved apps on request (600 / 15 min and 30,000 / day are the
#: figures commonly reported); overall limits kept at twice the read ones, as in the defaults.
APPROVED_APP_LIMITS = RateLimits(read=(600, 30_000), overall=(1_200, 60_000))


def parse_latency(spec: float | str | LatencyModel, *, seed: int = 0) -> LatencyModel:
    """Strava's latency (seconds): a constant (``0.4``), ``"lognormal:MEDIAN,SIGMA"``, or a LatencyModel."""
    if isinstance(spec, LatencyModel):
        return spec
    if isinstance(spec, bool):  # True is an int: it would pass as 1 s
        raise InvalidInput(f"latency must be seconds (0.4) or 'lognormal:MEDIAN,SIGMA', got {spec!r}")
    if isinstance(spec, int | float):
        return LatencyModel(median_s=float(spec), seed=seed)
    text = str(spec).strip()
    try:
        if text.startswith("lognormal:"):
            median, sigma = (float(x) for x in text.split(":", 1)[1].split(","))
            return LatencyModel(median_s=median, sigma=sigma, seed=seed)
        return LatencyModel(median_s=float(text), seed=seed)
    except InvalidInput:  # parsed, and refused for what it says
        raise
    except ValueError:
        raise InvalidInput(f"latency must be seconds (0.4) or 'lognormal:MEDIAN,SIGMA', got {text!r}") from None


def _faults(spec: Faults | dict[str, Any] | None) -> Faults:
    if spec is None:
        return Faults()
    if isinstance(spec, Faults):
        return spec
    return from_options(Faults, spec, what="faults")


#: The lowest value of each number of a :class:`Scenario` (all must be finite; fractions at most 1; a field that
#: may be ``None`` is checked only when set). The simulator would otherwise run, and report, whatever these came out
#: as: a NaN tick never fires, a lease of 0 has lapsed as it is taken.
_LOWEST: dict[str, float] = {
    "store_latency_s": 0.0,
    "cold_start_s": 0.0,
    "cold_start_rate": 0.0,
    "worker_poll_s": 1e-3,
    "worker_kill_at_s": 0.0,
    "worker_restart_s": 0.0,
    "deadline_margin_s": 0.0,
    "lease_s": 1e-3,
    "max_sim_s": 1.0,
    "budget_every_s": 1e-3,
    "tick_s": 1.0,  # pg_cron's shortest interval; calls overlap, so a shorter one would only pile them up
    "reconcile_every_s": 1.0,
    "churn_until_s": 0.0,
    "kill_rate": 0.0,
    "divergence_every_s": 1e-3,
    "resync_s": 0.0,
}
_FRACTIONS = {"cold_start_rate", "kill_rate"}


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Everything one run depends on. Times in seconds (simulated), money in USD.

    Modelled overheads: ``store_latency_s`` per store call (a database round trip); a cold start of
    ``cold_start_s`` before a fraction ``cold_start_rate`` of requests (seeded). ``worker_kill_at_s`` kills the
    worker (``worker`` strategy) at that time, as SIGKILL would (no clean-up); a new one starts
    ``worker_restart_s`` later. ``instances`` serverless instances serve the app, each a process of its own (its
    own runner and Strava client, so its own view of the rate budget and of Strava's health), sharing the store
    and Strava; each request goes to one of them at random (seeded). With ``shared_budget`` (the default, as
    deployed) every Strava request first takes a slot in the store, where every instance counts; without it each
    instance counts only its own requests and learns the others' from Strava's headers. ``max_sim_s`` bounds
    the run: what has not finished by then is *stuck*.
    ``compact_activities`` has FakeStrava serve activity lists with only the fields syncsim reads (see
    :data:`~syncsim.strava.fake.COMPACT_SUMMARY_KEYS`): the same activities, a third of the bytes to build,
    parse and store; set it to ``False`` to push Strava's full SummaryActivity through the sync instead.
    ``detail`` has every browser ask for a detail sync (``{"payload": {"detail": true}}``): one extra
    ``GET /activities/{id}`` per activity, as apps that fetch details do.
    """

    workload: Workload
    platform: PlatformSpec
    strategy: str = "waituntil"
    seed: int = 0
    latency: LatencyModel = field(default_factory=LatencyModel)
    faults: Faults = field(default_factory=Faults)
    rate_limits: RateLimits = STRAVA_DEFAULT_LIMITS
    poll: PollSchedule = field(default_factory=PollSchedule)
    store_latency_s: float = 0.005
    cold_start_s: float = 0.0
    cold_start_rate: float = 0.0
    worker_concurrency: int = 8
    instances: int = 1
    shared_budget: bool = True
    worker_poll_s: float = defaults.WORKER_POLL_S
    worker_kill_at_s: float | None = None
    worker_restart_s: float = 60.0
    deadline_margin_s: float = defaults.DEADLINE_MARGIN_S
    lease_s: float = defaults.LEASE_S
    max_sim_s: float = 7 * 86_400.0
    budget_every_s: float = 60.0
    compact_activities: bool = True
    detail: bool = False
    #: A scheduler calls the tick (``/api/cron/tick``) every this many seconds, on the clock (at each epoch multiple,
    #: as cron fires), whether its last call has answered or not; with it, the run lasts until no job is left (or
    #: ``max_sim_s``), browsers or not. Ticks are invocations, counted in the cost.
    tick_s: float | None = None
    #: The tick reconciles a history not listed to its end for this long (seconds).
    reconcile_every_s: float = defaults.RECONCILE_EVERY_S
    #: Athletes change their histories while the run goes on (FakeStrava's churn), until ``churn_until_s``.
    churn: Churn | None = None
    churn_until_s: float | None = None
    #: Strava is down (every request answered 503, the OAuth endpoints' included) from the first to the second of
    #: these times, in seconds after the start (FakeStrava's ``Faults.down``, on the run's clock).
    strava_down_s: tuple[float, float] | None = None
    #: Strava's clock runs this many seconds behind the app's (negative: ahead). Its rate-limit windows reset by
    #: its own clock, so a request the app sends at a window's start by its clock may count in the window before.
    strava_clock_behind_s: float = 0.0
    #: Probability that an invocation is killed at a random moment within its limit (an instance crash).
    kill_rate: float = 0.0
    #: Every this many seconds, the store is compared with FakeStrava's truth (``SimulationResult.divergence``).
    divergence_every_s: float | None = None
    #: Each athlete syncs again this long after their first sync ended (an incremental sync, ``auto``).
    resync_s: float | None = None
    #: Once the browsers are done, a worker finishes every job left (expired leases reclaimed); with
    #: ``reconcile_at_end`` every athlete is then reconciled. The exactness columns are measured after it.
    finish_at_end: bool = False
    reconcile_at_end: bool = False
    keep_events: bool = True
    progress: bool = False

    def __post_init__(self) -> None:
        whole("seed", self.seed)
        whole("worker_concurrency", self.worker_concurrency, lowest=1)
        whole("instances", self.instances, lowest=1)
        for name in _FLAGS:  # a string such as "false" is truthy: it would silently turn the option on
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise InvalidInput(f"{name} must be True or False, got {value!r}")
        for name, lowest in _LOWEST.items():
            value = getattr(self, name)
            if value is None and _FIELD_DEFAULTS[name] is None:
                continue
            fraction = name in _FRACTIONS
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < lowest
                or (fraction and value > 1)
            ):
                what = f"a fraction within {lowest:g}..1" if fraction else f"a finite number >= {lowest:g}"
                raise InvalidInput(f"{name} must be {what}, got {value!r}")
        limit = self.platform.max_duration_s
        if self.platform.always_on:
            raise InvalidInput(
                f"platform {self.platform.name!r} is the worker strategy's always-on machine (a cost reference), not "
                "a platform serving the API; choose a serverless one (hobby, pro, ...) or unlimited"
            )
        if limit is not None and limit <= self.deadline_margin_s:
            raise InvalidInput(
                f"platform {self.platform.name!r}: a time limit of {limit:g} s leaves no time within the deadline "
                f"margin ({self.deadline_margin_s:g} s): give a limit above it, or a smaller deadline_margin_s"
            )
        if self.workload.athletes < 1:  # its metrics would pass or fail on nothing
            raise InvalidInput(f"nothing to simulate: workload {self.workload.name!r} has no athletes (need >= 1)")
        check_memory(
            run_memory_bytes(self.workload.total_activities),
            f"workload {self.workload.name!r} ({self.workload.total_activities:,} activities)",
        )
        last = max(row.arrival_s for row in self.workload.rows)
        if last >= self.max_sim_s:  # that athlete would never arrive, and the metrics would judge the rest alone
            raise InvalidInput(
                f"workload {self.workload.name!r} has a row arriving at {last:g} s, after the run ends "
                f"(max_sim_s {self.max_sim_s:g} s)"
            )
        skew = self.strava_clock_behind_s
        if isinstance(skew, bool) or not isinstance(skew, int | float) or not abs(skew) < QUARTER_HOUR_S:
            raise InvalidInput(
                f"strava_clock_behind_s must be seconds within a rate-limit window (|s| < 900), got {skew!r}"
            )
        down = self.strava_down_s
        if down is not None and not (
            isinstance(down, tuple | list)
            and len(down) == 2
            and all(isinstance(t, int | float) and not isinstance(t, bool) for t in down)
            and 0 <= down[0] <= down[1] < math.inf
        ):
            raise InvalidInput(f"strava_down_s must be (start_s, end_s) with 0 <= start_s <= end_s, got {down!r}")

    @classmethod
    def build(
        cls,
        *,
        workload: Workload | str | Path | None = None,
        athletes: int | None = None,
        platform: str | PlatformSpec = "hobby",
        strategy: str = "waituntil",
        seed: int = 0,
        latency: float | str | LatencyModel = 0.4,
        faults: Faults | dict[str, Any] | None = None,
        rate_limits: RateLimits | str | tuple[int, int] | dict[str, Any] | None = None,
        poll: PollSchedule | dict[str, Any] | None = None,
        **options: Any,
    ) -> Scenario:
        """Resolve names and shorthands into a Scenario (see :func:`syncsim.sim.simulate`)."""
        whole("seed", seed)  # before it seeds anything
        if athletes is not None:
            whole("athletes", athletes, lowest=1)
        resolve_strategy(strategy)
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            valid = sorted(known | {"athletes"})
            hints = [
                f"{name} (did you mean {' or '.join(close)}?)" if (close := get_close_matches(name, valid, 2)) else name
                for name in sorted(unknown)
            ]
            raise InvalidInput(f"unknown simulate option(s): {'; '.join(hints)}; the options are {', '.join(valid)}")
        schedule = poll if isinstance(poll, PollSchedule) else from_options(PollSchedule, poll or {}, what="poll")
        if workload is None:
            chosen = Workload.sample(athletes=DEFAULT_ATHLETES if athletes is None else athletes, seed=seed)
        else:  # with a workload, ``athletes`` takes its first ones (by arrival)
            chosen = Workload.resolve(workload)
            if athletes is not None:
                chosen = chosen.head(athletes)
        scenario = cls(
            workload=chosen,
            platform=platform_spec(platform),
            strategy=strategy,
            seed=seed,
            latency=parse_latency(latency, seed=seed),
            faults=_faults(faults),
            rate_limits=RateLimits.resolve(rate_limits),
            poll=schedule,
            **{**options, "churn": Churn.parse(options.get("churn"))},
        )
        return scenario

    def evolve(self, **changes: Any) -> Scenario:
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """The parameters as plain values (for ``SimulationResult.params``)."""
        return {
            "workload": self.workload.name,
            "athletes": self.workload.athletes,
            "activities": self.workload.total_activities,
            "platform": self.platform.name,
            "max_duration_s": self.platform.max_duration_s,
            "strategy": self.strategy,
            "seed": self.seed,
            "latency": repr(self.latency),
            "faults": repr(self.faults),
            "rate_limits": {"read": self.rate_limits.read, "overall": self.rate_limits.overall},
            "poll": repr(self.poll),
            "store_latency_s": self.store_latency_s,
            "cold_start_s": self.cold_start_s,
            "cold_start_rate": self.cold_start_rate,
            "worker_concurrency": self.worker_concurrency,
            "instances": self.instances,
            "shared_budget": self.shared_budget,
            "deadline_margin_s": self.deadline_margin_s,
            "lease_s": self.lease_s,
            "max_sim_s": self.max_sim_s,
            "compact_activities": self.compact_activities,
            "detail": self.detail,
            "tick_s": self.tick_s,
            "reconcile_every_s": self.reconcile_every_s,
            "churn": repr(self.churn),
            "strava_down_s": self.strava_down_s,
            "strava_clock_behind_s": self.strava_clock_behind_s,
            "kill_rate": self.kill_rate,
            "resync_s": self.resync_s,
            "finish_at_end": self.finish_at_end,
            "reconcile_at_end": self.reconcile_at_end,
        }


_FIELD_DEFAULTS = {f.name: f.default for f in fields(Scenario)}
#: The on/off options (annotated ``bool``).
_FLAGS = tuple(f.name for f in fields(Scenario) if f.type in (bool, "bool"))
