"""The batch contract's shape: `video.job.batch.submitted`, detail `{batchId, jobs: [...]}`.

Plain Python (the rules Lambda checks it at cold start, the pydantic model in contract.py and
`routing-manager publish --batch` check the same). A batch whose shape is wrong is rejected as a
whole (`invalid_batch:{problem}`); a job inside a well-formed batch is the single job's contract,
decided one by one, so an invalid job never sinks the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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


SEND_BATCH_ENTRIES = 10  # SQS SendMessageBatch and EventBridge PutEvents: at most 10 entries a call
# What the workflow needs of each job's decision (routing_core.engine.Decision): the explanation stays
# in the decision's log line and `explain`, so a 100-job plan stays far under the 256 KiB state payload.
_KEPT = ("outcome", "provider", "model", "queue", "queueUrl", "reason", "rule", "quoteUsd", "quoteUsdText",
         "priority", "providerRegion", "tableVersion", "recordAttributes", "budgetKey")


def plan(detail: Any, decide: Callable[[Any], Mapping[str, Any]]) -> dict[str, Any]:
    """The whole batch decided in one invoke: each job by `decide` (the single job's decision, with its
    metric and log line), in order. A malformed batch decides no job and says why (`reason`).

    Per job: `index` (its place in `jobs`), `jobId`, `recorded` (false when there is no usable key: a
    jobId absent, not a string or empty is `missing_required_field:jobId` without asking the engine, as
    the single workflow's CheckJobId does; `invalid_job_id:*` comes from the engine) and the decision's
    fields. A jobId seen earlier in the batch is `duplicate`, not decided again (nothing charged): the
    claim is exactly-once across executions, and this makes it so within one. `sendGroups` packs the
    routed jobs by queue, 10 a SendMessageBatch call."""
    batch_id = detail.get("batchId") if isinstance(detail, dict) else None
    batch_id = batch_id if isinstance(batch_id, str) and batch_id.strip() else None
    problem = malformed(detail)
    if problem is not None:
        return {"batchId": batch_id, "reason": problem[0], "why": problem[1], "jobs": [], "sendGroups": [],
                "counts": {}}
    jobs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, job in enumerate(detail["jobs"]):
        job_id = job.get("jobId") if isinstance(job, dict) else None
        if not isinstance(job_id, str) or job_id == "":
            jobs.append({**_EMPTY, "index": index, "jobId": None, "recorded": False, "outcome": "reject",
                         "reason": reasons.MISSING_FIELD_PREFIX + "jobId", "rule": "validate"})
            continue
        if job_id in seen:
            jobs.append({**_EMPTY, "index": index, "jobId": job_id, "recorded": False, "outcome": "duplicate"})
            continue
        decision = decide(job)
        recorded = not (decision.get("reason") or "").startswith(reasons.INVALID_JOB_ID_PREFIX)
        if recorded:
            seen.add(job_id)
        jobs.append({**_EMPTY, **{k: decision[k] for k in _KEPT if k in decision}, "index": index,
                     "jobId": job_id if recorded else None, "recorded": recorded})
    groups: dict[str, list[int]] = {}
    for entry in jobs:
        if entry["outcome"] == "route" and entry["recorded"]:
            groups.setdefault(entry["queueUrl"], []).append(entry["index"])
    send_groups = [{"queueUrl": url, "queue": jobs[members[0]]["queue"], "jobs": members[i:i + SEND_BATCH_ENTRIES]}
                   for url, members in groups.items() for i in range(0, len(members), SEND_BATCH_ENTRIES)]
    counts: dict[str, int] = {}
    for entry in jobs:
        counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
    return {"batchId": batch_id, "reason": None, "why": None, "jobs": jobs, "sendGroups": send_groups,
            "counts": counts}


_EMPTY: dict[str, Any] = {"provider": None, "model": None, "queue": None, "queueUrl": None, "reason": None,
                          "rule": None, "quoteUsd": None, "quoteUsdText": None, "priority": None,
                          "providerRegion": None, "tableVersion": None}
