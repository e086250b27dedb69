"""One test per workflow path: the record, the messages, the events and the states taken."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from routing_core.contract import JobRecord

from routing_manager import project
from routing_manager.local.stack import LocalStack
from tests.support import (
    body,
    credits_table,
    deploy_routing_on_credits,
    events_for,
    job,
    messages_for,
    submit,
)

DECIDED = ["CheckJobId", "DecideRoute", "CheckDecision"]
ROUTED_PATH = [*DECIDED, "ClaimJob", "RouteOrReject", "EnqueueJob", "MarkRouted", "EmitRouted"]
REJECTED_PATH = [*DECIDED, "ClaimJob", "RouteOrReject", "MarkRejected", "EmitRejected"]
UNRECORDED_TAIL = ["EmitUnrecordedRejection", "CountUnrecordedRejection", "RejectedWithoutRecord"]
FAILURE_TAIL = ["RecordFailure", "EmitFailed", "CountFailure", "SendToFailureQueue", "JobFailed"]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_in_contract(record: dict | None) -> None:  # type: ignore[type-arg]
    """Every attribute the router writes is one the contract (events/schemas) names."""
    assert record is not None
    JobRecord.model_validate(record)
    assert set(record) <= set(JobRecord.model_fields), set(record) - set(JobRecord.model_fields)


def test_routed_to_fal(stack: LocalStack) -> None:
    detail = job()
    [result] = submit(stack, detail)
    assert (result.status, result.provider, result.model, result.queue) == ("ROUTED", "fal", "wan-i2v", "FalJobQueue")
    assert result.path == ROUTED_PATH

    record = stack.record(detail["jobId"])
    assert_in_contract(record)
    assert {k: record[k] for k in ("status", "provider", "model", "queue", "routedBy")} == {
        "status": "ROUTED", "provider": "fal", "model": "wan-i2v", "queue": "FalJobQueue", "routedBy": "RoutingManager"}
    parse_time(record["routedAt"])

    [message] = messages_for(stack, "FalJobQueueUrl", detail["jobId"])
    assert body(message) == detail  # the complete original detail
    assert {k: v["StringValue"] for k, v in message["MessageAttributes"].items()} == {
        "provider": "fal", "model": "wan-i2v", "jobId": detail["jobId"], "quoteUsd": "0.6400", "priority": "normal",
        "providerRegion": "us-east-1"}  # fal's first region (routing_table.json)
    assert message["MessageAttributes"]["quoteUsd"]["DataType"] == "Number"
    assert (record["quoteUsd"], record["priority"], record["providerRegion"]) == (Decimal("0.64"), "normal",
                                                                                  "us-east-1")  # 8 s at $0.08/s

    [event] = events_for(stack, detail["jobId"])
    assert (event["source"], event["detail-type"]) == ("routing.manager", "video.job.routed")
    assert set(event["detail"]) == {"jobId", "provider", "model", "queue", "quoteUsd", "priority", "providerRegion",
                                    "routedBy", "ts", "tableVersion"}
    assert event["detail"]["providerRegion"] == "us-east-1"
    assert event["detail"]["tableVersion"] == 0  # the bundled table: nothing published
    assert (event["detail"]["provider"], event["detail"]["queue"]) == ("fal", "FalJobQueue")
    assert (event["detail"]["quoteUsd"], event["detail"]["priority"]) == (0.64, "normal")
    parse_time(event["detail"]["ts"])


def test_explicit_provider_routes_to_replicate(stack: LocalStack) -> None:
    detail = job(provider="Replicate", lengthSec=60, resolution="1080p", feature={"audio": True})
    [result] = submit(stack, detail)
    assert (result.status, result.provider, result.model) == ("ROUTED", "replicate", "minimax/video-01")
    assert stack.record(detail["jobId"])["queue"] == "ReplicateJobQueue"  # type: ignore[index]
    [message] = messages_for(stack, "ReplicateJobQueueUrl", detail["jobId"])
    assert body(message)["provider"] == "Replicate"
    assert messages_for(stack, "FalJobQueueUrl", detail["jobId"]) == []


@pytest.mark.parametrize(("changes", "reason"), [
    ({"lengthSec": 30, "resolution": "1080p"}, "no_route"),
    ({"provider": "runway"}, "unsupported_provider:runway"),
    ({"lengthSec": 0}, "invalid_length:must_be_1-300_seconds"),
    ({"lengthSec": "8"}, "invalid_length:not_a_number"),
    ({"prompt": ...}, "missing_required_field:prompt"),
    ({"userId": None}, "missing_required_field:userId"),
])
def test_rejections_are_recorded_and_announced(stack: LocalStack, changes: dict, reason: str) -> None:
    detail = job(**changes)
    [result] = submit(stack, detail)
    assert (result.status, result.reason, result.path) == ("REJECTED", reason, REJECTED_PATH)
    record = stack.record(detail["jobId"])
    assert_in_contract(record)
    assert record is not None
    assert (record["status"], record["rejectionReason"]) == ("REJECTED", reason)
    parse_time(record["rejectedAt"])
    [event] = events_for(stack, detail["jobId"])
    assert event["detail-type"] == "video.job.rejected"
    assert {k: event["detail"][k] for k in ("status", "reason")} == {"status": "rejected", "reason": reason}
    assert "retryable" not in event["detail"]
    assert messages_for(stack, "FalJobQueueUrl", detail["jobId"]) == []


def test_duplicate_submission_sends_and_emits_nothing(stack: LocalStack) -> None:
    detail = job()
    [first] = submit(stack, detail)
    [second] = submit(stack, detail)
    assert (first.status, second.status) == ("ROUTED", "DUPLICATE")
    assert second.path == [*DECIDED, "ClaimJob", "ReleaseBudgetOfDuplicate", "CountDuplicate", "AlreadyHandled"]
    assert len(messages_for(stack, "FalJobQueueUrl", detail["jobId"])) == 1
    assert len(events_for(stack, detail["jobId"])) == 1
    assert stack.record(detail["jobId"])["attempts"] == 1  # type: ignore[index]


def test_duplicate_of_a_rejected_job_is_also_a_no_op(stack: LocalStack) -> None:
    detail = job(lengthSec=301)
    assert [r.status for r in submit(stack, detail)] == ["REJECTED"]
    assert [r.status for r in submit(stack, detail)] == ["DUPLICATE"]
    assert len(events_for(stack, detail["jobId"])) == 1


@pytest.mark.parametrize("job_id", [..., None, 42, ""])
def test_missing_job_id_is_rejected_without_record(stack: LocalStack, job_id: object) -> None:
    detail = job(jobId=job_id, prompt="missing-id-" + repr(job_id))
    [result] = submit(stack, detail)
    assert (result.status, result.reason) == ("REJECTED", "missing_required_field:jobId")
    assert result.path == ["CheckJobId", "NoteMissingJobId", *UNRECORDED_TAIL]
    rejected = [e for e in stack.outcome_events() if e["detail"].get("reason") == "missing_required_field:jobId"]
    assert rejected and all(e["detail"]["jobId"] is None for e in rejected)
    items = stack.client("dynamodb").scan(TableName=stack.outputs["JobsTableName"])["Items"]
    assert not [i for i in items if "missing-id-" in i.get("submittedDetail", {}).get("S", "")]


def test_lambda_throttled_then_succeeding_is_retried(stack: LocalStack) -> None:
    stack.rules.faults[:] = ["TooManyRequestsException", "ServiceException"]
    before = stack.rules.invocations
    detail = job()
    [result] = submit(stack, detail)
    assert result.status == "ROUTED"
    assert stack.rules.invocations - before == 3
    assert len(messages_for(stack, "FalJobQueueUrl", detail["jobId"])) == 1


def _assert_failed(stack: LocalStack, detail: dict, reason_prefix: str, claimed: bool = True) -> str:
    record = stack.record(detail["jobId"])
    assert_in_contract(record)
    assert record is not None and record["status"] == "FAILED"
    assert record["failureReason"].startswith(reason_prefix)
    assert "claimedBy" not in record  # the claim is released
    if claimed:  # the claim kept the detail for replay; before it, the failure queue keeps it
        assert __import__("json").loads(record["submittedDetail"]) == detail
    else:
        assert "submittedDetail" not in record
    failures = [body(m) for m in stack.messages(stack.outputs["RoutingFailureQueueUrl"])
                if body(m)["event"]["detail"].get("jobId") == detail["jobId"]]
    assert len(failures) == 1 and failures[0]["reason"] == record["failureReason"]
    [event] = events_for(stack, detail["jobId"])
    assert event["detail"]["retryable"] is True and event["detail"]["reason"] == record["failureReason"]
    return str(record["failureReason"])


def test_lambda_failing_for_good_is_a_replayable_rule_error(stack: LocalStack) -> None:
    stack.rules.faults[:] = [RuntimeError("routing table on fire")]
    detail = job()
    [result] = submit(stack, detail)
    assert result.status == "FAILED"
    assert result.path[-8:] == ["DecideRoute", "KeepRuleError", "NameRuleError", *FAILURE_TAIL]
    assert _assert_failed(stack, detail, "rule_error:", claimed=False) == "rule_error:RuntimeError"
    assert messages_for(stack, "FalJobQueueUrl", detail["jobId"]) == []


def test_lambda_service_errors_exhaust_retries(stack: LocalStack) -> None:
    stack.rules.faults[:] = ["ServiceException"] * 3
    detail = job()
    [result] = submit(stack, detail)
    assert result.status == "FAILED"
    assert _assert_failed(stack, detail, "rule_error:", claimed=False) == "rule_error:Lambda.ServiceException"
    assert stack.rules.faults == []  # 1 attempt + 2 retries


def test_missing_provider_queue_is_a_queue_error(fresh_stack: LocalStack) -> None:
    sqs = fresh_stack.client("sqs")
    sqs.delete_queue(QueueUrl=fresh_stack.outputs["FalJobQueueUrl"])
    detail = job()
    [result] = submit(fresh_stack, detail)
    assert result.status == "FAILED"
    assert result.path[-8:] == ["EnqueueJob", "NameQueueError", "ReleaseBudgetOfFailedEnqueue", *FAILURE_TAIL]
    # The name the local stack records, and the one the docs give as the example.
    assert _assert_failed(fresh_stack, detail, "queue_error:") == "queue_error:SQS.SdkClientException"
    for doc in ("EVENT_SCHEMA.md", "RUNBOOK.md"):
        assert "queue_error:SQS.SdkClientException" in (project.ROOT / "docs" / doc).read_text(), doc


def test_put_events_failing_keeps_the_record_and_fails_the_execution(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.events import models

    real = models.EventsBackend.put_events

    def failing(self, events):  # type: ignore[no-untyped-def]
        if any(e.get("Source") == "routing.manager" for e in events):
            return [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"} for _ in events]
        return real(self, events)

    monkeypatch.setattr(models.EventsBackend, "put_events", failing)
    detail = job()
    [result] = submit(fresh_stack, detail)
    assert result.status == "EMIT_FAILED"
    assert result.path[-3:] == ["EmitRouted", "RecordEmitFailure", "AnnouncementFailed"]
    record = fresh_stack.record(detail["jobId"])
    assert record is not None
    assert_in_contract(record)
    assert (record["status"], record["emitError"]) == ("ROUTED", "emit_error:EventBridge.FailedEntry")
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1


CREDITS_PATH = [*DECIDED, "ReadCredits", "CheckCreditBalance"]


def test_credit_balance_is_read_only_when_a_rule_needs_it(aws: None, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from routing_manager.local import stack as local_stack

    s = deploy_routing_on_credits(tmp_path)
    try:
        [rich] = submit(s, job(userId="rich-user"))
        assert (rich.status, rich.provider) == ("ROUTED", "replicate")
        assert rich.path[:8] == [*CREDITS_PATH, "UseCreditBalance", "DecideWithCredits", "CheckDecisionWithCredits"]
        [unknown] = submit(s, job(userId="nobody"))
        assert (unknown.status, unknown.provider) == ("ROUTED", "fal")  # balance unknown: the rule does not match
        assert unknown.path[:6] == [*CREDITS_PATH, "NoCreditBalance"]
        [invalid] = submit(s, job(userId="rich-user", lengthSec=0))  # validation first: no read for a rejection
        assert invalid.path == REJECTED_PATH
    finally:
        local_stack.release(s)


def test_no_credits_read_when_no_rule_needs_them(aws: None) -> None:
    from routing_manager.local import stack as local_stack

    s = local_stack.deploy_unique(parameters={"CreditsTableName": credits_table()})
    try:
        [result] = submit(s, job(userId="rich-user"))
        assert result.path == ROUTED_PATH  # the shipped table routes on no balance: no read, no second call
    finally:
        local_stack.release(s)


def test_a_premium_job_is_sent_with_its_tiers_priority(stack: LocalStack) -> None:
    detail = job(tier="premium")
    [result] = submit(stack, detail)
    [message] = messages_for(stack, "FalJobQueueUrl", detail["jobId"])
    assert message["MessageAttributes"]["priority"]["StringValue"] == "high"
    assert stack.record(detail["jobId"])["priority"] == "high"  # type: ignore[index]


def test_a_quote_over_the_users_credits_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    aws: None) -> None:
    """The table prices the job in credits; `poor-user` holds 10 of the 64 an 8 s fal job costs."""
    import json

    from routing_manager.local import stack as local_stack
    from tests.support import CREDITS_TABLE

    table = {**CREDITS_TABLE, "credits": {"creditsPerUsd": 100}}
    path = tmp_path / "routing_table.json"
    path.write_text(json.dumps(table))
    credits = credits_table()
    import boto3

    boto3.client("dynamodb", region_name="us-east-1").put_item(
        TableName=credits, Item={"userId": {"S": "poor-user"}, "balance": {"N": "10"}})
    deployed = local_stack.deploy_unique(parameters={"CreditsTableName": credits},
                                         function_environment={"ROUTING_TABLE_PATH": str(path)})
    try:
        poor, rich = job(userId="poor-user"), job(userId="rich-user", resolution="1080p", lengthSec=20)
        results = {r.jobId: r for r in submit(deployed, poor, rich)}
        assert (results[poor["jobId"]].status, results[poor["jobId"]].reason) == ("REJECTED", "insufficient_credits")
        assert messages_for(deployed, "FalJobQueueUrl", poor["jobId"]) == []
        # rich-user's 42 credits: the funded rule sends 20 s to Replicate, quoted 1.666 USD = 166.6 credits.
        assert (results[rich["jobId"]].status, results[rich["jobId"]].reason) == ("REJECTED", "insufficient_credits")
        record = deployed.record(poor["jobId"])
        assert record is not None and record["rejectionReason"] == "insufficient_credits"
    finally:
        local_stack.release(deployed)
