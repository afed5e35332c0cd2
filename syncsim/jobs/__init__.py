"""Job records and the stores that keep them."""

from __future__ import annotations

from syncsim.jobs.model import ACTIVE_STATUSES, FINAL_STATUSES, Job, JobStatus, parse_user_id
from syncsim.jobs.store import Store, default_store_url, open_store, redact_url

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "Job",
    "JobStatus",
    "Store",
    "default_store_url",
    "open_store",
    "parse_user_id",
    "redact_url",
]
