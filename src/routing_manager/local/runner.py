"""Publish submitted events into a local stack and report what happened to each job."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from routing_core.contract import SUBMITTED_DETAIL_TYPE, SUBMITTED_SOURCE

from routing_manager.events import SubmittedEvent
from routing_manager.local import moto_adapters
from routing_manager.local.stack import Execution, LocalStack, execution_arns, wait_for_executions

# The last state an execution entered says how the job ended.
ENDINGS = {
    "EmitRouted": "ROUTED",
    "EmitRejected": "REJECTED",
    "EmitUnavailable": "UNAVAILABLE",  # recorded FAILED, replayable: no provider could take it now
    "RejectedWithoutRecord": "REJECTED",
    "AlreadyHandled": "DUPLICATE",
    "JobFailed": "FAILED",
    "AnnouncementFailed": "EMIT_FAILED",
}
FAIL_STATES = {"JobFailed", "AnnouncementFailed"}
# How a job ends when the workflow's own paths did not end it: nothing may be recorded, announced or
# replayable for it. `local run` exits 1 on any of them.
LOST_STATUSES = {"LOST", "CRASHED", "TIMED_OUT", "ABORTED"}
# EventBridge refused the event (PutEvents answered an error for it): the publisher knows, nothing ran.
REFUSED = "REFUSED"


@dataclass
class JobResult:
    jobId: Any
    status: str
    provider: str | None
    model: str | None
    queue: str | None
    reason: str | None
    path: list[str]
    executionArn: str

    def as_json(self) -> str:
        keys = ("jobId", "status", "provider", "model", "queue", "reason", "path")
        return json.dumps({k: v for k, v in asdict(self).items() if k in keys})


def summarise(execution: Execution) -> JobResult:
    last = execution.path[-1] if execution.path else None
    if execution.status == "RUNNING":
        status = "STUCK"
    elif last in ENDINGS and (execution.status == "SUCCEEDED" or last in FAIL_STATES):
        status = ENDINGS[last or ""]
    elif execution.status == "FAILED":
        status = "CRASHED"  # States.Runtime or States.DataLimitExceeded: no Catch could run
    else:
        status = execution.status  # TIMED_OUT, ABORTED
    decision = (execution.output or {}).get("decision") or {}
    reason = decision.get("reason")
    if status == "FAILED":
        reason = execution.error
    elif status in ("STUCK", "EMIT_FAILED", "CRASHED") or execution.status not in ("SUCCEEDED", "FAILED"):
        reason = execution.error or f"execution {execution.status.lower()}"
    routed = status == "ROUTED"
    return JobResult(
        jobId=execution.job_id, status=status,
        provider=decision.get("provider") if routed else None,
        model=decision.get("model") if routed else None,
        queue=decision.get("queue") if routed else None,
        reason=None if routed else reason, path=execution.path, executionArn=execution.arn,
    )


def starts_workflow(event: SubmittedEvent) -> bool:
    return event.source == SUBMITTED_SOURCE and event.detail_type == SUBMITTED_DETAIL_TYPE


def publish_and_wait(stack: LocalStack, events: list[SubmittedEvent], timeout: float = 60.0,
                     stop: threading.Event | None = None) -> list[JobResult]:
    """Publish through EventBridge PutEvents, as a frontend would, and wait for every execution.

    An execution still running at the timeout is reported STUCK, never waited on forever. Once `stop` is
    set (Ctrl-C), nothing more is published and what ran so far is reported at once."""
    before = execution_arns(stack)
    undelivered_before = len(moto_adapters.UNDELIVERED)
    client = stack.client("events")
    bus = stack.outputs.get("EventBusName")
    refused: list[JobResult] = []
    refused_starts = 0
    for start in range(0, len(events), 10):
        if stop is not None and stop.is_set():
            break
        batch = events[start:start + 10]
        response = client.put_events(Entries=[e.entry(bus) for e in batch])
        for event, answer in zip(batch, response["Entries"], strict=True):
            if answer.get("ErrorCode"):  # EventBridge never took it: the publisher is told, nothing runs
                refused_starts += starts_workflow(event)
                detail = event.detail if isinstance(event.detail, dict) else {}
                refused.append(JobResult(jobId=detail.get("jobId"), status="REFUSED", provider=None, model=None,
                                         queue=None, reason=f"{answer['ErrorCode']}: {answer.get('ErrorMessage')}",
                                         path=[], executionArn=""))
    undelivered = [u for u in moto_adapters.UNDELIVERED[undelivered_before:]
                   if u.state_machine_arn == stack.state_machine_arn]
    expected = sum(1 for e in events if starts_workflow(e)) - refused_starts - len(undelivered)
    executions = wait_for_executions(stack, expected, timeout=timeout, already=before, stop=stop)
    executions.sort(key=lambda e: e.start)
    return [summarise(e) for e in executions] + [_never_started(u) for u in undelivered] + refused


def _never_started(undelivered: moto_adapters.Undelivered) -> JobResult:
    """EventBridge could not start the workflow: the event waits in the rule's dead-letter queue
    (replayable), or, when it could not be put there either, it is lost."""
    detail = undelivered.event.get("detail")
    return JobResult(jobId=detail.get("jobId") if isinstance(detail, dict) else None,
                     status="DEAD_LETTERED" if undelivered.dead_lettered else "LOST", provider=None, model=None,
                     queue=None, reason=undelivered.error, path=[], executionArn="")


def totals(results: list[JobResult]) -> tuple[Counter[str], Counter[str]]:
    by_status = Counter(r.status for r in results)
    by_queue = Counter(r.queue for r in results if r.queue)
    return by_status, by_queue
