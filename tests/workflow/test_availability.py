"""Provider availability on the local stack: the kill switch, the circuit breaker, saturation, and the
jobs no provider can take (FAILED, replayable), as an operator and a consumer see them."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from routing_core.live import MAX_AGE_SEC
from typer.testing import CliRunner

from routing_manager import project
from routing_manager.cli import app
from routing_manager.local import moto_adapters
from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack
from tests.support import events_for, job, messages_for, submit

runner = CliRunner()


def cli(stack: LocalStack, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--stack", stack.name, "--region", "us-east-1"])
    assert result.exit_code == 0, result.output
    return result


def status(stack: LocalStack) -> dict[tuple[str, str | None], dict[str, Any]]:
    lines = [json.loads(line) for line in cli(stack, "provider", "status", "--json").stdout.splitlines()]
    return {(line["provider"], line["model"]): line for line in lines if line["providerRegion"] is None}


def outcome(stack: LocalStack, kind: str, events: Any = None, **detail: Any) -> None:
    """What a provider invoker publishes when a job ends."""
    detail = {"jobId": f"done-{time.monotonic_ns()}", "provider": "fal", "model": "wan-i2v", **detail}
    result = (events or stack.client("events")).put_events(Entries=[{
        "Source": "fal.invoker", "DetailType": f"video.job.{kind}", "Detail": json.dumps(detail),
        "EventBusName": stack.outputs["EventBusName"]}])
    assert result["FailedEntryCount"] == 0


def fresh_state() -> None:
    """Past the rules Lambda's cache: what the control table says now is what the next job sees."""
    time.sleep(MAX_AGE_SEC)


def breaker(stack: LocalStack, scope: str = "fal#wan-i2v") -> dict[str, Any]:
    """The scope's item in the control table, as plain values."""
    from boto3.dynamodb.types import TypeDeserializer

    item = stack.client("dynamodb").get_item(TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
                                             Key={"pk": {"S": "state"}, "sk": {"S": scope}})["Item"]
    return {key: TypeDeserializer().deserialize(value) for key, value in item.items()}


def window_counts(stack: LocalStack, scope: str) -> tuple[float, float]:
    items = stack.client("dynamodb").query(
        TableName=stack.outputs["ProviderStateTableName"], KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"window#{scope}"}}, ConsistentRead=True)["Items"]
    return (sum(float(i["total"]["N"]) for i in items), sum(float(i["failures"]["N"]) for i in items))


@pytest.fixture
def quick_breaker(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """A stack whose fal breaker cools down in 1 s (the shipped table: 30 s)."""
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    table = copy.deepcopy(table)
    table["providers"]["fal"]["breaker"] = {"cooldownSec": 1}
    path = tmp_path / "routing_table.json"
    path.write_text(json.dumps(table))
    deployed = local_stack.deploy_unique(function_environment={"ROUTING_TABLE_PATH": str(path)})
    yield deployed
    local_stack.release(deployed)


def test_kill_switch_spills_over_holds_strict_jobs_and_replay_routes_them_once(fresh_stack: LocalStack) -> None:
    stack = fresh_stack
    assert submit(stack, job())[0].provider == "fal"

    disabled_at = time.monotonic()
    out = cli(stack, "provider", "disable", "fal", "--reason", "fal incident 4711").stdout
    assert "fal disabled until enabled: fal incident 4711" in out
    time.sleep(max(0.0, disabled_at + MAX_AGE_SEC - time.monotonic()))  # within 2 s of the command
    spilled, strict = submit(stack, job(), job(provider="fal"))

    assert (spilled.status, spilled.provider) == ("ROUTED", "replicate")
    assert (strict.status, strict.reason) == ("UNAVAILABLE", "provider_unavailable:fal")
    assert messages_for(stack, "FalJobQueueUrl", strict.jobId) == []
    assert messages_for(stack, "ReplicateJobQueueUrl", strict.jobId) == []
    record = stack.record(strict.jobId)
    assert record is not None and (record["status"], record["failureReason"]) == ("FAILED", "provider_unavailable:fal")
    [event] = events_for(stack, strict.jobId)
    assert (event["detail-type"], event["detail"]["reason"], event["detail"]["retryable"]) == (
        "video.job.rejected", "provider_unavailable:fal", True)
    changes = [e["detail"] for e in stack.outcome_events() if e["detail-type"] == "routing.provider.changed"]
    assert changes[-1]["change"] == "disabled" and changes[-1]["reason"] == "fal incident 4711"
    assert changes[-1]["by"].startswith("arn:aws:")  # the caller's identity
    assert status(stack)[("fal", None)]["state"] == "disabled"

    # Still down: replay finds the job, and the workflow holds it again (FAILED, not lost).
    cli(stack, "replay", "--reason", "provider_unavailable", "--yes")
    assert messages_for(stack, "FalJobQueueUrl", strict.jobId) == []

    cli(stack, "provider", "enable", "fal")
    fresh_state()
    assert submit(stack, job())[0].provider == "fal"
    before = local_stack.execution_arns(stack)
    cli(stack, "replay", "--reason", "provider_unavailable", "--yes")
    local_stack.wait_for_executions(stack, 1, already=before)
    cli(stack, "replay", "--reason", "provider_unavailable", "--yes")  # nothing left: no second message
    assert len(messages_for(stack, "FalJobQueueUrl", strict.jobId)) == 1
    assert stack.record(strict.jobId)["status"] == "ROUTED"  # type: ignore[index]


def test_provider_errors_open_the_breaker_and_jobs_spill_over(fresh_stack: LocalStack) -> None:
    for _ in range(6):
        outcome(fresh_stack, "failed", errorType="provider_error")
    line = status(fresh_stack)[("fal", "wan-i2v")]
    assert line["state"] == "open" and line["reason"] == "5 of 5 outcomes failed in 60 s"
    fresh_state()
    [result] = submit(fresh_stack, job())
    assert (result.status, result.provider) == ("ROUTED", "replicate")
    opened = [e["detail"] for e in fresh_stack.outcome_events() if e["detail-type"] == "routing.provider.changed"]
    assert [(c["change"], c["by"]) for c in opened] == [("breaker_opened", "circuit-breaker")]


def test_errors_in_one_provider_region_open_its_breaker_there_and_jobs_fail_over(fresh_stack: LocalStack) -> None:
    for _ in range(6):  # the invoker echoes the message's providerRegion attribute
        outcome(fresh_stack, "failed", errorType="provider_error", providerRegion="us-east-1")
    lines = [json.loads(line) for line in cli(fresh_stack, "provider", "status", "--json").stdout.splitlines()]
    states = {(line["provider"], line["model"], line["providerRegion"]): line["state"] for line in lines}
    assert (states[("fal", "wan-i2v", "us-east-1")], states[("fal", "wan-i2v", None)]) == ("open", "available")
    fresh_state()
    [result] = submit(fresh_stack, job())
    assert (result.status, result.provider, result.queue) == ("ROUTED", "fal", "FalEuJobQueue")
    assert fresh_stack.record(result.jobId)["providerRegion"] == "eu-west-1"  # type: ignore[index]
    [opened] = [e["detail"] for e in fresh_stack.outcome_events() if e["detail-type"] == "routing.provider.changed"]
    assert (opened["change"], opened["model"], opened["providerRegion"]) == ("breaker_opened", "wan-i2v", "us-east-1")


def test_invalid_input_is_the_jobs_fault_and_never_opens_the_breaker(fresh_stack: LocalStack) -> None:
    for _ in range(20):
        outcome(fresh_stack, "failed", errorType="invalid_input")
    outcome(fresh_stack, "completed", durationSec=12)
    assert window_counts(fresh_stack, "fal#wan-i2v") == (1, 0)
    assert status(fresh_stack)[("fal", "wan-i2v")]["state"] == "available"
    assert submit(fresh_stack, job())[0].provider == "fal"


def test_rate_limited_with_retry_after_opens_the_breaker_that_long(fresh_stack: LocalStack) -> None:
    outcome(fresh_stack, "failed", errorType="rate_limited", retryAfterSec=120)
    line = status(fresh_stack)[("fal", "wan-i2v")]
    assert line["state"] == "open" and line["reason"] == "rate limited: retry after 120 s"


def test_after_the_cooldown_exactly_one_probe_goes_through_then_it_closes(quick_breaker: LocalStack) -> None:
    stack = quick_breaker
    for _ in range(5):
        outcome(stack, "failed", errorType="timeout")
    assert breaker(stack)["breakerReason"] == "5 of 5 outcomes failed in 60 s"  # open, for 1 s
    fresh_state()  # and past the 1 s cooldown: half-open
    assert status(stack)[("fal", "wan-i2v")]["state"] == "half_open"

    results = submit(stack, *(job() for _ in range(100)), timeout=120)
    by_provider = [r.provider for r in results]
    assert (by_provider.count("fal"), by_provider.count("replicate")) == (1, 99)
    [probe] = [r for r in results if r.provider == "fal"]
    assert len(messages_for(stack, "FalJobQueueUrl", probe.jobId)) == 1

    outcome(stack, "completed", jobId=probe.jobId, durationSec=30)
    assert status(stack)[("fal", "wan-i2v")]["state"] == "available"
    fresh_state()
    assert submit(stack, job())[0].provider == "fal"
    changes = [e["detail"]["change"] for e in stack.outcome_events() if e["detail-type"] == "routing.provider.changed"]
    assert changes == ["breaker_opened", "breaker_closed"]


def test_a_failed_probe_opens_the_breaker_again(quick_breaker: LocalStack) -> None:
    for _ in range(5):
        outcome(quick_breaker, "failed", errorType="provider_error")
    fresh_state()
    [probe] = submit(quick_breaker, job())
    assert probe.provider == "fal"
    failed_at = time.time()
    outcome(quick_breaker, "failed", jobId=probe.jobId, errorType="provider_error")
    item = breaker(quick_breaker)  # open again for the 1 s cooldown (status may already say half_open)
    assert item["breakerReason"] == "probe job failed: provider_error"
    assert float(item["breakerOpenUntil"]) >= failed_at + 1 and "probeJobId" not in item
    changes = [e["detail"] for e in quick_breaker.outcome_events() if e["detail-type"] == "routing.provider.changed"]
    assert [(c["change"], c["state"]) for c in changes] == [("breaker_opened", "open"), ("probe_failed", "open")]


def test_200_concurrent_outcomes_lose_no_count(fresh_stack: LocalStack) -> None:
    start = threading.Barrier(20)
    published: list[int] = []
    clients = [fresh_stack.client("events") for _ in range(20)]  # a boto3 session is not thread-safe

    def publish(events: Any) -> None:
        start.wait()
        for _ in range(10):
            outcome(fresh_stack, "completed", events, model="wan-i2v-fast", durationSec=3)
            published.append(1)

    threads = [threading.Thread(target=publish, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(published) == 200
    [function] = [f for f in fresh_stack.functions.values() if "ProviderEvents" in f.name]
    assert function.environments > 1  # the counts really were made side by side
    assert [f.error for f in moto_adapters.ASYNC_FAILURES if f.function == function.name] == []
    assert window_counts(fresh_stack, "fal#wan-i2v-fast") == (200, 0)


def test_a_saturated_queue_spills_jobs_over_until_its_alarm_clears(fresh_stack: LocalStack) -> None:
    cloudwatch = fresh_stack.client("cloudwatch")
    alarm = f"{fresh_stack.name}-saturated-fal"
    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="oldest message 412 s")
    assert status(fresh_stack)[("fal", None)]["state"] == "saturated"
    fresh_state()
    spilled, strict = submit(fresh_stack, job(), job(provider="fal"))
    assert (spilled.provider, strict.reason) == ("replicate", "provider_unavailable:fal")
    explanation = json.loads(runner.invoke(app, ["explain", "--json", "--live", "--stack", fresh_stack.name,
                                                 "--region", "us-east-1", str(project.EVENTS / "routed-fal.json")]
                                           ).stdout)["explanation"]
    assert explanation[-1]["candidates"][0] == {"provider": "fal", "model": "wan-i2v", "quoteUsd": 0.64,
                                                "skipped": "queue saturated", "droppedBy": "availability"}

    cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="drained")
    assert status(fresh_stack)[("fal", None)]["state"] == "available"
    changes = [e["detail"] for e in fresh_stack.outcome_events() if e["detail-type"] == "routing.provider.changed"]
    assert [(c["change"], c["by"]) for c in changes] == [("saturated", "queue-age-alarm"),
                                                          ("unsaturated", "queue-age-alarm")]
