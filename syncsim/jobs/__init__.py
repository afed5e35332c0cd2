"""Jobs: the record and its statuses, the runner (submit, claim, lease, retry, recover), the service the API
talks to, the long-running worker, and the handlers that do a job's work."""

from __future__ import annotations

from syncsim.jobs.model import ACTIVE_STATUSES, FINAL_STATUSES, Job, JobStatus, parse_user_id

__all__ = ["ACTIVE_STATUSES", "FINAL_STATUSES", "Job", "JobStatus", "parse_user_id"]
