"""`routing-manager replay` on the local stack: failed jobs come back exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from routing_manager.cli import app
from routing_manager.local.stack import LocalStack, execution_arns, wait_for_executions
from tests.support import job, messages_for, submit


def replay_cli(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, *args: str) -> list[dict]:  # type: ignore[type-arg]
    monkeypatch.setattr("routing_manager.cli._aws_client", lambda service, *a: stack.client(service))
    before = execution_arns(stack)
    result = CliRunner().invoke(app, ["replay", "--stack", stack.name, "--json", *args])
    assert result.exit_code == 0, result.output
    # Only replay's rows: the in-process rules Lambda prints its log and EMF lines from execution threads.
    rows = [row for row in map(json.loads, result.stdout.splitlines()) if "action" in row]
    replayed = sum(1 for r in rows if r["action"].startswith("replayed"))
    if replayed:
        wait_for_executions(stack, replayed, already=before)
    return rows


def test_queue_error_replayed_after_the_queue_is_restored_routes_exactly_once(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = fresh_stack.client("sqs")
    fal_url = fresh_stack.outputs["FalJobQueueUrl"]
    name = fal_url.rsplit("/", 1)[1]
    sqs.delete_queue(QueueUrl=fal_url)
    detail = job()
    [failed] = submit(fresh_stack, detail)
    assert failed.status == "FAILED"

    dry = replay_cli(fresh_stack, monkeypatch)
    assert [(r["jobId"], r["source"], r["action"]) for r in dry] == [(detail["jobId"], "record", "would replay")]
    assert dry[0]["reason"].startswith("queue_error:")
    assert fresh_stack.record(detail["jobId"])["status"] == "FAILED"  # type: ignore[index]  # dry run: untouched

    assert sqs.create_queue(QueueName=name)["QueueUrl"] == fal_url  # the queue is back
    [row] = replay_cli(fresh_stack, monkeypatch, "--yes")
    assert row["action"].startswith("replayed as ")
    record = fresh_stack.record(detail["jobId"])
    assert record is not None and (record["status"], record["attempts"]) == ("ROUTED", 2)
    assert "failureReason" not in record and "failedAt" not in record  # the failure is over
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1
    # the failure queue message was consumed with the record: a second replay finds nothing
    assert replay_cli(fresh_stack, monkeypatch, "--yes") == []
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1


def test_stale_claim_is_recovered_and_a_fresh_one_is_left_alone(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    ddb = fresh_stack.client("dynamodb")
    table = fresh_stack.outputs["JobsTableName"]

    def claimed(detail: dict, minutes_ago: int) -> None:  # type: ignore[type-arg]
        at = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()
        ddb.put_item(TableName=table, Item={
            "jobId": {"S": detail["jobId"]}, "status": {"S": "CLAIMED"}, "claimedAt": {"S": at},
            "claimedBy": {"S": "arn:aws:states:us-east-1:123456789012:execution:dead:1"},
            "submittedDetail": {"S": json.dumps(detail)}, "attempts": {"N": "1"}})

    stale, fresh = job(), job()
    claimed(stale, 60)
    claimed(fresh, 2)
    rows = replay_cli(fresh_stack, monkeypatch, "--yes", "--stale-after", "15m")
    assert [(r["jobId"], r["source"], r["reason"]) for r in rows] == [
        (stale["jobId"], "stale-claim", "state_error:stale_claim")]
    assert fresh_stack.record(stale["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    assert fresh_stack.record(fresh["jobId"])["status"] == "CLAIMED"  # type: ignore[index]


def test_failure_message_for_a_job_routed_meanwhile_is_dropped_not_replayed(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    detail = job()
    [routed] = submit(fresh_stack, detail)
    assert routed.status == "ROUTED"
    envelope = {"source": "frontend.api", "detail-type": "video.job.submitted", "detail": detail}
    fresh_stack.client("sqs").send_message(QueueUrl=fresh_stack.outputs["RoutingFailureQueueUrl"],
                                           MessageBody=json.dumps({"event": envelope, "reason": "queue_error:X"}))
    [row] = replay_cli(fresh_stack, monkeypatch, "--yes")
    assert (row["source"], row["action"]) == ("failure-queue", "already routed: message removed")
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1
    assert replay_cli(fresh_stack, monkeypatch) == []


def test_dead_lettered_event_is_replayed_and_filters_apply(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = fresh_stack.client("sqs")
    details = [job(), job()]
    for detail in details:
        envelope = {"version": "0", "id": "x", "source": "frontend.api", "detail-type": "video.job.submitted",
                    "time": datetime.now(UTC).isoformat(), "detail": detail}
        sqs.send_message(QueueUrl=fresh_stack.outputs["SubmittedEventsDLQUrl"], MessageBody=json.dumps(envelope),
                         MessageAttributes={"ERROR_CODE": {"DataType": "String", "StringValue": "THROTTLING"}})
    rows = replay_cli(fresh_stack, monkeypatch, "--yes", "--job-id", details[0]["jobId"], "--reason", "undelivered")
    assert [(r["jobId"], r["reason"]) for r in rows] == [(details[0]["jobId"], "undelivered:THROTTLING")]
    assert fresh_stack.record(details[0]["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    assert fresh_stack.record(details[1]["jobId"]) is None
    left = replay_cli(fresh_stack, monkeypatch)  # not selected: visible again at once, still listed
    assert [(r["jobId"], r["action"]) for r in left] == [(details[1]["jobId"], "would replay")]


def test_poisoned_entries_are_listed_and_the_rest_is_replayed(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs, ddb = fresh_stack.client("sqs"), fresh_stack.client("dynamodb")
    failure_queue, table = fresh_stack.outputs["RoutingFailureQueueUrl"], fresh_stack.outputs["JobsTableName"]
    sqs.send_message(QueueUrl=failure_queue, MessageBody="{not json",
                     MessageAttributes={"jobId": {"DataType": "String", "StringValue": "poison-1"}})
    for job_id, stored in (("bad-detail", {"S": "{truncated"}), ("no-detail", None)):
        item = {"jobId": {"S": job_id}, "status": {"S": "FAILED"}, "failureReason": {"S": "rule_error:X"}}
        ddb.put_item(TableName=table, Item={**item, **({"submittedDetail": stored} if stored else {})})
    good = job()
    envelope = {"source": "frontend.api", "detail-type": "video.job.submitted", "detail": good}
    sqs.send_message(QueueUrl=failure_queue, MessageBody=json.dumps({"event": envelope, "reason": "rule_error:X"}))

    rows = {r["jobId"]: r["action"] for r in replay_cli(fresh_stack, monkeypatch, "--yes")}
    assert rows["poison-1"] == "not replayable: the message body is not JSON (message kept)"
    assert rows["bad-detail"] == "not replayable: the stored submittedDetail is not JSON"
    assert rows["no-detail"] == "not replayable: no submitted detail stored with the record"
    assert rows[good["jobId"]].startswith("replayed as ")
    assert fresh_stack.record(good["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    # What replay read and did not consume is visible again at once, not after 60 s.
    attributes = sqs.get_queue_attributes(QueueUrl=failure_queue, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "1", "0")


def test_a_rules_failure_before_the_claim_is_replayed_from_the_failure_queue(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record holds no detail (the claim never ran); the failure-queue message does."""
    fresh_stack.rules.faults[:] = [RuntimeError("rules down")]
    detail = job()
    [failed] = submit(fresh_stack, detail)
    assert failed.status == "FAILED" and "submittedDetail" not in fresh_stack.record(detail["jobId"])  # type: ignore[operator]
    [row] = replay_cli(fresh_stack, monkeypatch, "--yes")
    assert (row["source"], row["action"][:11]) == ("record", "replayed as")
    assert fresh_stack.record(detail["jobId"])["status"] == "ROUTED"  # type: ignore[index]


def test_nothing_to_replay_says_so_and_the_local_stack_is_the_default_with_an_endpoint(
        stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def outputs(name: str, *args: object) -> dict[str, str]:
        seen.append(name)
        return {**stack.outputs, "RoutingFailureQueueUrl": "", "SubmittedEventsDLQUrl": "",
                "JobsTableName": "Jobs-empty"}

    stack.client("dynamodb").create_table(
        TableName="Jobs-empty", KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    monkeypatch.setattr("routing_manager.cli.stack_outputs", outputs)
    monkeypatch.setattr("routing_manager.cli._aws_client", lambda service, *a: stack.client(service))
    result = CliRunner().invoke(app, ["replay", "--endpoint-url", "http://127.0.0.1:5000"])
    assert result.exit_code == 0, result.output
    assert seen == ["routing-manager-local"]
    assert result.stderr.strip() == "nothing to replay" and result.stdout == ""


def test_a_batch_the_rules_could_not_decide_is_replayed_job_by_job(
        fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch event waits on the failure queue; replay submits each of its jobs as a single job,
    and deletes the message once every one of them is replayed."""
    from routing_manager.local import runner

    fresh_stack.rules.faults[:] = [RuntimeError("rules down")]
    jobs = [job() for _ in range(3)]
    [execution] = runner.publish_batches_and_wait(fresh_stack, [{"batchId": "b-undecided", "jobs": jobs}])
    assert (execution.status, execution.path[-1]) == ("FAILED", "BatchFailed")
    assert [fresh_stack.record(j["jobId"]) for j in jobs] == [None] * 3

    rows = replay_cli(fresh_stack, monkeypatch, "--yes")

    assert sorted(r["jobId"] for r in rows) == sorted(j["jobId"] for j in jobs)
    assert {(r["source"], r["reason"], r["action"][:11]) for r in rows} == {
        ("failure-queue", "rule_error:RuntimeError", "replayed as")}
    for replayed in jobs:
        assert fresh_stack.record(replayed["jobId"])["status"] == "ROUTED"  # type: ignore[index]
        assert len(messages_for(fresh_stack, "FalJobQueueUrl", replayed["jobId"])) == 1
    assert replay_cli(fresh_stack, monkeypatch, "--yes") == []  # the batch message is gone
