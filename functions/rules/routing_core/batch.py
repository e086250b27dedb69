"""The batch contract's shape: `video.job.batch.submitted`, detail `{batchId, jobs: [...]}`.

Plain Python (the rules Lambda checks it at cold start, the pydantic model in contract.py and
`routing-manager publish --batch` check the same). A batch whose shape is wrong is rejected as a
whole (`invalid_batch:{problem}`); a job inside a well-formed batch is the single job's contract,
decided one by one, so an invalid job never sinks the batch.
"""

from __future__ import annotations

import json
from typing import Any

from routing_core import reasons

BATCH_DETAIL_TYPE = "video.job.batch.submitted"
BATCH_ROUTED_DETAIL_TYPE = "video.job.batch.routed"
MAX_BATCH_JOBS = 100
MAX_BATCH_ID_BYTES = 256
# EventBridge's PutEvents entry (Source, DetailType, Detail): at most 256 KiB (aws_limits.EVENTBRIDGE_ENTRY_BYTES).
MAX_ENTRY_BYTES = 256 * 1024
SOURCE = "frontend.api"

NOT_AN_OBJECT = reasons.INVALID_BATCH_PREFIX + "not_an_object"
MISSING_BATCH_ID = reasons.INVALID_BATCH_PREFIX + "missing_batch_id"
JOBS_NOT_A_LIST = reasons.INVALID_BATCH_PREFIX + "jobs_not_a_list"
EMPTY = reasons.INVALID_BATCH_PREFIX + "empty"
TOO_MANY_JOBS = reasons.INVALID_BATCH_PREFIX + "too_many_jobs"
TOO_LARGE = reasons.INVALID_BATCH_PREFIX + "too_large"


def entry_bytes(detail: Any) -> int:
    """The PutEvents entry size of a batch event with this detail, as EventBridge counts it (UTF-8 of
    Source, DetailType and the Detail text as json.dumps writes it, which publish sends)."""
    return len(SOURCE.encode()) + len(BATCH_DETAIL_TYPE.encode()) + len(json.dumps(detail).encode("utf-8",
                                                                                               "surrogatepass"))


def malformed(detail: Any) -> tuple[str, str] | None:
    """None for a batch the router takes apart job by job, else (reason code, why) for one it rejects
    whole. The jobs themselves are not looked into: each is decided as a single job would be."""
    if not isinstance(detail, dict):
        return NOT_AN_OBJECT, "the detail is not a JSON object"
    batch_id = detail.get("batchId")
    if not isinstance(batch_id, str) or not batch_id.strip():
        return MISSING_BATCH_ID, "batchId is absent, not a string or blank"
    if len(batch_id.encode("utf-8", "surrogatepass")) > MAX_BATCH_ID_BYTES:
        return MISSING_BATCH_ID, f"batchId is over {MAX_BATCH_ID_BYTES} bytes"
    jobs = detail.get("jobs")
    if not isinstance(jobs, list):
        return JOBS_NOT_A_LIST, "jobs is absent or not a JSON array"
    if not jobs:
        return EMPTY, "jobs is empty: a batch holds 1 to 100 jobs"
    if len(jobs) > MAX_BATCH_JOBS:
        return TOO_MANY_JOBS, f"{len(jobs)} jobs: a batch holds at most {MAX_BATCH_JOBS}"
    size = entry_bytes(detail)
    if size > MAX_ENTRY_BYTES:
        return TOO_LARGE, f"{size:,} bytes: a PutEvents entry holds at most {MAX_ENTRY_BYTES:,}"
    return None
