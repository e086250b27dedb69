"""The batch workflow (statemachine/batch.asl.json) on the local stack: one execution per
`video.job.batch.submitted`, each job with the single job's records, messages, events and reason
codes; messages in SendMessageBatch of at most 10, outcome events in PutEvents of at most 10, a
failed entry sent again alone."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import pytest
from moto.events.models import EventsBackend
from moto.sqs.models import SQSBackend
from routing_core.contract import BatchRoutedDetail

from routing_manager.local import runner
from routing_manager.local.stack import Execution, LocalStack
from tests.support import body, events_for, failing_sqs_entries, job, messages_for, refused_outcome_events, submit
from tests.workflow.test_paths import assert_in_contract

INVALID = [  # (changes, reason): recorded and announced as the single workflow records them
    ({"lengthSec": 0}, "invalid_length:must_be_1-300_seconds"),
    ({"lengthSec": "8"}, "invalid_length:not_a_number"),
    ({"prompt": ...}, "missing_required_field:prompt"),
    ({"userId": None}, "missing_required_field:userId"),
    ({"provider": "runway"}, "unsupported_provider:runway"),
]


def batch_of(*jobs: Any) -> dict[str, Any]:
    return {"batchId": f"batch-{uuid.uuid4()}", "jobs": list(jobs)}


def run(stack: LocalStack, *details: dict[str, Any]) -> list[Execution]:
    executions = runner.publish_batches_and_wait(stack, list(details), timeout=120)
    assert len(executions) == len(details)
    return executions


def summary(stack: LocalStack, batch_id: str) -> dict[str, Any]:
    [event] = [e for e in stack.outcome_events()
               if e["detail-type"] == "video.job.batch.routed" and e["detail"].get("batchId") == batch_id]
    detail: dict[str, Any] = event["detail"]
    BatchRoutedDetail.model_validate(detail)  # the contract of events/schemas/video.job.batch.routed
    return detail


def _unrecorded(stack: LocalStack) -> int:
    return sum(e["detail"].get("reason") == "missing_required_field:jobId" for e in events_for(stack, None))


class Calls:
    """Counts the local stack's SendMessageBatch / SendMessage / PutEvents calls and their entries."""

    def __init__(self, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
        provider_queues = {stack.outputs[key].rsplit("/", 1)[1] for key in ("FalJobQueueUrl", "ReplicateJobQueueUrl")}
        self.batches: list[int] = []
        self.singles = 0
        self.put_events: list[int] = []
        send_batch, send, put = SQSBackend.send_message_batch, SQSBackend.send_message, EventsBackend.put_events

        def counting_batch(backend: Any, queue_name: str, entries: dict[str, Any]) -> Any:
            self.batches.append(len(entries))
            self.singles -= len(entries)  # moto sends each entry through send_message
            return send_batch(backend, queue_name, entries)

        def counting_send(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
            self.singles += queue_name in provider_queues  # not the event tap's queue
            return send(backend, queue_name, *args, **kwargs)

        def counting_put(backend: Any, events: list[dict[str, Any]]) -> Any:
            self.put_events.append(len(events))
            return put(backend, events)

        monkeypatch.setattr(SQSBackend, "send_message_batch", counting_batch)
        monkeypatch.setattr(SQSBackend, "send_message", counting_send)
        monkeypatch.setattr(EventsBackend, "put_events", counting_put)


def test_a_100_job_batch_with_7_invalid_and_3_duplicates_routes_each_valid_job_once(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    before = job()
    [routed_before] = submit(stack, before)  # a duplicate across executions: routed already
    assert routed_before.status == "ROUTED"
    fresh = [job() for _ in range(90)]
    invalid = [job(**changes) for changes, _ in INVALID] + [job(jobId=...), job(jobId="")]
    repeats = [dict(fresh[0]), dict(fresh[1]), dict(before)]
    detail = batch_of(*fresh[:45], *invalid[:4], repeats[0], *fresh[45:], *invalid[4:], repeats[1], repeats[2])
    assert len(detail["jobs"]) == 100
    calls = Calls(stack, monkeypatch)
    unrecorded_before = _unrecorded(stack)

    [execution] = run(stack, detail)

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert execution.path[0] == "DecideTheBatch" and execution.path[-1] == "BatchRouted"
    for routed in fresh:
        record = stack.record(routed["jobId"])
        assert_in_contract(record)
        assert record is not None and record["status"] == "ROUTED" and record["claimedBy"] == execution.arn
        assert record["batchId"] == detail["batchId"]
        [message] = messages_for(stack, "FalJobQueueUrl", routed["jobId"])
        assert body(message) == routed
        assert {k: message["MessageAttributes"][k]["StringValue"] for k in ("provider", "providerRegion")} == {
            "provider": "fal", "providerRegion": "us-east-1"}
        assert (record["messageId"], record["providerRegion"]) == (message["MessageId"], "us-east-1")
        assert json.loads(record["submittedDetail"]) == routed
        [event] = events_for(stack, routed["jobId"])
        assert event["detail-type"] == "video.job.routed"
        assert {k: event["detail"][k] for k in ("provider", "queue", "providerRegion", "routedBy")} == {
            "provider": "fal", "queue": "FalJobQueue", "providerRegion": "us-east-1", "routedBy": "RoutingManager"}
    for rejected, (_, reason) in zip(invalid, INVALID, strict=False):
        record = stack.record(rejected["jobId"])
        assert_in_contract(record)
        assert record is not None and (record["status"], record["rejectionReason"]) == ("REJECTED", reason)
        [event] = events_for(stack, rejected["jobId"])
        assert (event["detail-type"], event["detail"]["reason"]) == ("video.job.rejected", reason)
    assert _unrecorded(stack) == unrecorded_before + 2
    assert len(messages_for(stack, "FalJobQueueUrl", before["jobId"])) == 1  # the first routing's, only
    assert len(events_for(stack, before["jobId"])) == 1
    assert stack.record(before["jobId"])["claimedBy"] == routed_before.executionArn  # type: ignore[index]
    assert {k: summary(stack, detail["batchId"]).get(k) for k in (
        "reason", "jobs", "routed", "rejected", "unavailable", "duplicate", "failed", "unannounced")} == {
        "reason": None, "jobs": 100, "routed": 90, "rejected": 7, "unavailable": 0, "duplicate": 3,
        "failed": 0, "unannounced": 0}
    # 90 messages in SendMessageBatch calls of at most 10, none alone; the batch itself, 97 outcome
    # events and the summary in PutEvents calls of at most 10 entries.
    assert calls.batches == [10] * 9 and calls.singles == 0
    assert max(calls.put_events) <= 10 and sum(calls.put_events) == 1 + 90 + 7 + 1


def test_the_same_batch_twice_routes_its_jobs_once(stack: LocalStack) -> None:
    jobs = [job() for _ in range(12)]
    detail = batch_of(*jobs)
    first, second = run(stack, detail, {**detail, "batchId": detail["batchId"] + "-again"})
    assert (first.status, second.status) == ("SUCCEEDED", "SUCCEEDED")
    for routed in jobs:
        assert len(messages_for(stack, "FalJobQueueUrl", routed["jobId"])) == 1
        assert len(events_for(stack, routed["jobId"])) == 1
    counts = [Counter({k: summary(stack, d)[k] for k in ("routed", "duplicate")}) for d in
              (detail["batchId"], detail["batchId"] + "-again")]
    assert sorted(counts, key=lambda c: c["routed"]) == [Counter(duplicate=12), Counter(routed=12)]


def test_an_sqs_entry_that_fails_inside_a_call_is_sent_again_alone(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [job() for _ in range(5)]
    unlucky = jobs[2]["jobId"]
    calls = failing_sqs_entries(monkeypatch, unlucky, times=1)
    detail = batch_of(*jobs)
    [execution] = run(stack, detail)

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert calls == [sorted(j["jobId"] for j in jobs), [unlucky]]
    for routed in jobs:
        assert len(messages_for(stack, "FalJobQueueUrl", routed["jobId"])) == 1
        assert stack.record(routed["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    assert summary(stack, detail["batchId"])["routed"] == 5


def test_an_entry_sqs_keeps_failing_is_recorded_failed_and_replayable(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [job() for _ in range(3)]
    unlucky = jobs[0]["jobId"]
    calls = failing_sqs_entries(monkeypatch, unlucky, times=3)
    detail = batch_of(*jobs)
    [execution] = run(stack, detail)

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert calls[1:] == [[unlucky], [unlucky]]  # 3 attempts, the others sent once
    record = stack.record(unlucky)
    assert record is not None
    assert (record["status"], record["failureReason"]) == ("FAILED", "queue_error:SQS.InternalError")
    assert "claimedBy" not in record and json.loads(record["submittedDetail"]) == jobs[0]
    [event] = events_for(stack, unlucky)
    assert event["detail"] | {"ts": None} == {"jobId": unlucky, "status": "rejected", "retryable": True,
                                              "reason": "queue_error:SQS.InternalError", "ts": None}
    assert messages_for(stack, "FalJobQueueUrl", unlucky) == []
    assert {k: summary(stack, detail["batchId"])[k] for k in ("routed", "failed")} == {"routed": 2, "failed": 1}


def test_an_outcome_event_eventbridge_refuses_is_put_again_alone(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [job() for _ in range(4)]
    unlucky = jobs[1]["jobId"]
    puts = refused_outcome_events(monkeypatch, unlucky, times=1)
    detail = batch_of(*jobs)
    [execution] = run(stack, detail)

    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    for routed in jobs:
        [event] = events_for(stack, routed["jobId"])
        assert event["detail-type"] == "video.job.routed"
    with_unlucky = [p for p in puts if unlucky in p]
    assert len(with_unlucky) == 2 and with_unlucky[1] == [unlucky]


def test_outcome_events_refused_three_times_fail_the_execution_with_the_jobs_recorded(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = [job() for _ in range(2)]
    refused_outcome_events(monkeypatch, jobs[0]["jobId"], times=3)
    detail = batch_of(*jobs)
    [execution] = run(stack, detail)

    assert (execution.status, execution.error) == ("FAILED", "OutcomesUnannounced")
    assert [stack.record(j["jobId"])["status"] for j in jobs] == ["ROUTED", "ROUTED"]  # type: ignore[index]
    assert events_for(stack, jobs[0]["jobId"]) == [] and len(events_for(stack, jobs[1]["jobId"])) == 1
    assert {k: summary(stack, detail["batchId"])[k] for k in ("routed", "unannounced")} == {
        "routed": 2, "unannounced": 1}


@pytest.mark.parametrize(("detail", "reason"), [
    ({"batchId": "b-empty", "jobs": []}, "invalid_batch:empty"),
    ({"jobs": [{"jobId": "j-orphan"}]}, "invalid_batch:missing_batch_id"),
    ({"batchId": "b-many", "jobs": [{"jobId": f"j-{i}"} for i in range(101)]}, "invalid_batch:too_many_jobs"),
])
def test_a_malformed_batch_is_rejected_whole(stack: LocalStack, detail: dict[str, Any], reason: str) -> None:
    [execution] = run(stack, detail)
    assert (execution.status, execution.path[-1]) == ("SUCCEEDED", "BatchRejected")
    [event] = [e for e in stack.outcome_events()
               if e["detail-type"] == "video.job.batch.routed" and e["detail"].get("reason") == reason
               and e["detail"]["batchId"] == detail.get("batchId")]
    summary = BatchRoutedDetail.model_validate(event["detail"])
    assert (summary.jobs, summary.routed, summary.why) == (0, 0, event["detail"]["why"]) and summary.why
    for entry in detail["jobs"][:3]:
        assert stack.record(entry["jobId"]) is None


def written_then_failed(monkeypatch: pytest.MonkeyPatch, job_id: str, marker: str) -> list[str]:
    """The first matching UpdateItem writes, then answers an error (as a call that times out after
    DynamoDB applied it): Step Functions retries a write that already happened."""
    from moto.dynamodb.models import DynamoDBBackend

    from tests.reliability.faults import error

    original, failed = DynamoDBBackend.update_item, []

    def update_item(backend: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        item = original(backend, table_name, key, *args, **kwargs)
        if not failed and key.get("jobId", {}).get("S") == job_id and marker in repr((args, kwargs)):
            failed.append(job_id)
            raise error("InternalServerError")
        return item

    monkeypatch.setattr(DynamoDBBackend, "update_item", update_item)
    return failed


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_retried_mark_whose_first_attempt_wrote_keeps_the_job_routed(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    detail = job()
    failed = written_then_failed(monkeypatch, detail["jobId"], ":routed")
    if mode == "single":
        [result] = submit(stack, detail)
        assert result.status == "ROUTED", (result.reason, result.path)
    else:
        [execution] = run(stack, batch_of(detail))
        assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    assert failed == [detail["jobId"]]
    record = stack.record(detail["jobId"])
    assert record is not None and record["status"] == "ROUTED" and "failureReason" not in record
    assert len(messages_for(stack, "FalJobQueueUrl", detail["jobId"])) == 1
    [event] = events_for(stack, detail["jobId"])
    assert event["detail-type"] == "video.job.routed"
