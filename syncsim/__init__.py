"""syncsim: a background-job system for syncing Strava histories on serverless platforms, and its simulator.

``__all__`` is the public API; notebooks and the CLI use nothing else. Parts that need optional extras
(pandas for the simulator, matplotlib for charts) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from syncsim.clock import Clock, LoopClock, SystemClock
from syncsim.errors import (
    ConfigError,
    InvalidInput,
    InvocationKilled,
    JobError,
    MalformedResponse,
    OutOfTime,
    PermanentError,
    RateLimited,
    Reschedule,
    RetryableError,
    StoreError,
    StravaError,
    StravaUnavailable,
    SyncsimError,
    Unauthorized,
)
from syncsim.jobs.handlers import HandlerRegistry
from syncsim.jobs.model import Job, JobStatus
from syncsim.jobs.runner import STRATEGIES, JobContext, JobRunner, Strategy
from syncsim.jobs.service import JobService
from syncsim.jobs.worker import Worker
from syncsim.platforms import Invocation, LocalPlatform, PlatformSpec, load_platforms, platform_spec
from syncsim.retry import RetryPolicy
from syncsim.stores import Store, open_store
from syncsim.strava.models import Activity, StravaTokens

__version__ = "0.1.0"

#: Public names that load lazily: name -> module.
_LAZY = {
    "StravaClient": "syncsim.strava.client",
    "RateLimitBudget": "syncsim.strava.ratelimit",
    "Trace": "syncsim.strava.trace",
    "FakeStrava": "syncsim.strava.fake",
    "Faults": "syncsim.strava.fake",
    "LatencyModel": "syncsim.strava.fake",
    "running_fake_strava": "syncsim.strava.fake.server",
    "strava_sync": "syncsim.strava.sync",
    "register_strava_sync": "syncsim.strava.sync",
    "list_requests_needed": "syncsim.strava.sync",
    "run_virtual": "syncsim.sim.virtual",
    "virtual_clock": "syncsim.sim.virtual",
    "SimulationResult": "syncsim.sim.results",
    "Comparison": "syncsim.sim.results",
    "SUCCESS_METRICS": "syncsim.sim.results",
    "PER_PAGE": "syncsim.strava.sync",
    "default_handlers": "syncsim.job_types",
    "register_builtin_handlers": "syncsim.jobs.handlers",
    "simulate": "syncsim.sim.run",
    "compare": "syncsim.sim.compare",
    "reference_sweep": "syncsim.sim.compare",
    "budget_bound_s": "syncsim.sim.compare",
    "REFERENCE_SWEEP": "syncsim.sim.compare",
    "Workload": "syncsim.sim.workload",
    "WorkloadRow": "syncsim.sim.workload",
    "Scenario": "syncsim.sim.scenario",
    "RateLimits": "syncsim.sim.scenario",
    "APPROVED_APP_LIMITS": "syncsim.sim.scenario",
    "STRAVA_DEFAULT_LIMITS": "syncsim.sim.scenario",
    "PollSchedule": "syncsim.sim.browser",
    "create_app": "syncsim.api.app",
    "build_app": "syncsim.api.app",
    "mint_token": "syncsim.api.auth",
    "verify_token": "syncsim.api.auth",
    "VercelPlatform": "syncsim.platforms.vercel",
    "write_report": "syncsim.plots.report",
}

#: Public submodules, also loaded on first use.
_LAZY_MODULES = {"plots": "syncsim.plots"}

__all__ = [
    "STRATEGIES",
    "Activity",
    "Clock",
    "ConfigError",
    "HandlerRegistry",
    "InvalidInput",
    "Invocation",
    "InvocationKilled",
    "Job",
    "JobContext",
    "JobError",
    "JobRunner",
    "JobService",
    "JobStatus",
    "LocalPlatform",
    "LoopClock",
    "MalformedResponse",
    "OutOfTime",
    "PermanentError",
    "PlatformSpec",
    "RateLimited",
    "Reschedule",
    "RetryPolicy",
    "RetryableError",
    "Store",
    "StoreError",
    "Strategy",
    "StravaError",
    "StravaTokens",
    "StravaUnavailable",
    "SyncsimError",
    "SystemClock",
    "Unauthorized",
    "Worker",
    "load_platforms",
    "open_store",
    "platform_spec",
    *_LAZY,
    *_LAZY_MODULES,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'syncsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
