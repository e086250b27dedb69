"""Faults on every Task state: transient ones are retried away; permanent ones end in a recorded
status and, unless EventBridge itself is failing, an outcome event. Never a silent failure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from moto.cloudwatch.models import CloudWatchBackend
from moto.dynamodb.models import DynamoDBBackend
from moto.events.models import EventsBackend
from moto.sqs.models import SQSBackend

from routing_manager.local.stack import LocalStack
from tests.reliability.faults import FAILED_ENTRY, Fault, error, inject
from tests.support import body, events_for, job, messages_for, submit

FOREVER = 50


@dataclass
class Case:
    state: str
    target: Any
    method: str
    marker: str  # what identifies the call (besides the jobId)
    errors: list[Any]
    status: str
    reason: str | None = None  # prefix
    record: str | None = None
    messages: int = 0
    events: tuple[str, ...] = ()
    failure_queue: bool = False
    reject: bool = False  # submit a job the rules reject
    rule_fault: bool = False  # make the rules Lambda fail (to reach the failure path)
    duplicate: bool = False


THROTTLE_DDB = "ProvisionedThroughputExceededException"
CASES = {
    "claim-throttled": Case("ClaimJob", DynamoDBBackend, "update_item", "claimedAt", [error(THROTTLE_DDB)] * 2,
                            "ROUTED", record="ROUTED", messages=1, events=("video.job.routed",)),
    # Throttling under names no Retry lists (the transient policy matches States.TaskFailed): still retried away.
    "claim-throttled-any-name": Case("ClaimJob", DynamoDBBackend, "update_item", "claimedAt",
                                     [error("ThrottlingException"), error("RequestLimitExceeded")], "ROUTED",
                                     record="ROUTED", messages=1, events=("video.job.routed",)),
    "enqueue-kms-throttled": Case("EnqueueJob", SQSBackend, "send_message", "JobQueue",
                                  [error("KmsThrottled", "sqs"), error("RequestThrottled", "sqs")], "ROUTED",
                                  record="ROUTED", messages=1, events=("video.job.routed",)),
    "claim-broken": Case("ClaimJob", DynamoDBBackend, "update_item", "claimedAt", [error("ValidationException")] * FOREVER,
                         "FAILED", "state_error:DynamoDB.ValidationException", record="FAILED",
                         events=("video.job.rejected",), failure_queue=True),
    "enqueue-throttled": Case("EnqueueJob", SQSBackend, "send_message", "JobQueue", [error("RequestThrottled", "sqs")] * 2,
                              "ROUTED", record="ROUTED", messages=1, events=("video.job.routed",)),
    "enqueue-broken": Case("EnqueueJob", SQSBackend, "send_message", "JobQueue",
                           [error("InvalidParameterValue", "sqs")] * FOREVER, "FAILED", "queue_error:SQS.",
                           record="FAILED", events=("video.job.rejected",), failure_queue=True),
    "mark-routed-throttled": Case("MarkRouted", DynamoDBBackend, "update_item", ":routed", [error(THROTTLE_DDB)] * 2,
                                  "ROUTED", record="ROUTED", messages=1, events=("video.job.routed",)),
    "mark-routed-broken": Case("MarkRouted", DynamoDBBackend, "update_item", ":routed",
                               [error("ValidationException")] * FOREVER, "FAILED", "state_error:", record="FAILED",
                               messages=1, events=("video.job.rejected",), failure_queue=True),
    "emit-routed-flaky": Case("EmitRouted", EventsBackend, "put_events", "video.job.routed", [FAILED_ENTRY],
                              "ROUTED", record="ROUTED", messages=1, events=("video.job.routed",)),
    "emit-routed-down": Case("EmitRouted", EventsBackend, "put_events", "video.job.routed", [FAILED_ENTRY] * FOREVER,
                             "EMIT_FAILED", record="ROUTED", messages=1),
    "mark-rejected-broken": Case("MarkRejected", DynamoDBBackend, "update_item", ":rejected",
                                 [error("ValidationException")] * FOREVER, "FAILED", "state_error:", record="FAILED",
                                 events=("video.job.rejected",), failure_queue=True, reject=True),
    "emit-rejected-down": Case("EmitRejected", EventsBackend, "put_events", "video.job.rejected",
                               [FAILED_ENTRY] * FOREVER, "EMIT_FAILED", record="REJECTED", reject=True),
    "record-failure-broken": Case("RecordFailure", DynamoDBBackend, "update_item", "failureReason",
                                  [error("ValidationException")] * FOREVER, "FAILED", "rule_error:", record=None,
                                  events=("video.job.rejected",), failure_queue=True, rule_fault=True),
    "failure-queue-broken": Case("SendToFailureQueue", SQSBackend, "send_message", "RoutingFailureQueue",
                                 [error("InvalidParameterValue", "sqs")] * FOREVER, "FAILED", "rule_error:", record="FAILED",
                                 events=("video.job.rejected",), rule_fault=True),
    "emit-failed-down": Case("EmitFailed", EventsBackend, "put_events", "retryable", [FAILED_ENTRY] * FOREVER,
                             "FAILED", "rule_error:", record="FAILED", failure_queue=True, rule_fault=True),
    "count-duplicate-broken": Case("CountDuplicate", CloudWatchBackend, "put_metric_data", "duplicate",
                                   [error("InternalServiceError", "cloudwatch")] * FOREVER, "DUPLICATE", record="ROUTED",
                                   messages=1, events=("video.job.routed",), duplicate=True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fault(name: str, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    detail = job(lengthSec=30, resolution="1080p") if case.reject else job()
    job_id = detail["jobId"]
    if case.duplicate:
        submit(stack, detail)
    # CloudWatch calls carry no jobId: match those on the marker alone.
    needs_id = case.target is not CloudWatchBackend
    fault = Fault(lambda call: case.marker in call and (not needs_id or job_id in call), case.errors)
    if case.rule_fault:
        stack.rules.faults[:] = [RuntimeError("rules down")]
    with inject(monkeypatch, case.target, case.method, fault):
        [result] = submit(stack, detail)

    assert fault.hits > 0, f"the fault never hit {case.state}"
    assert result.status == case.status, (result.status, result.reason, result.path)
    assert case.state in result.path
    if case.reason:
        assert (result.reason or "").startswith(case.reason), result.reason
    record = stack.record(job_id)
    assert (record or {}).get("status") == case.record
    if case.status == "EMIT_FAILED":
        assert record and record["emitError"] == "emit_error:EventBridge.FailedEntry"
    provider_messages = messages_for(stack, "FalJobQueueUrl", job_id)
    assert len(provider_messages) == case.messages
    kinds = tuple(e["detail-type"] for e in events_for(stack, job_id))
    assert kinds == case.events, kinds
    if "video.job.rejected" in kinds and case.status == "FAILED":
        assert events_for(stack, job_id)[0]["detail"]["retryable"] is True
    in_failure_queue = [body(m) for m in stack.messages(stack.outputs["RoutingFailureQueueUrl"])
                        if json.dumps(body(m)).count(job_id)]
    assert bool(in_failure_queue) == case.failure_queue
    # Never a failure without a trace: a record, a failure-queue message or an outcome event.
    assert record or in_failure_queue or kinds
