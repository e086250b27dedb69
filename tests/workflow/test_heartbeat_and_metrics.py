"""The heartbeat canary and the workflow's own counts, on the local stack."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from routing_manager.local.lambda_runtime import Result
from routing_manager.local.stack import LocalStack
from tests.support import job, submit


def _datapoints(stack: LocalStack, metric: str, dimensions: list[dict[str, str]] | None = None) -> float:
    now = datetime.now(UTC)
    stats = stack.client("cloudwatch").get_metric_statistics(
        Namespace="VideoJobRouting", MetricName=metric, Dimensions=dimensions or [],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=3600, Statistics=["Sum"])
    return sum(p["Sum"] for p in stats["Datapoints"])


def _invoke_heartbeat(stack: LocalStack) -> dict:  # type: ignore[type-arg]
    response = stack.client("lambda").invoke(FunctionName=stack.outputs["HeartbeatFunctionName"])
    return {"error": response.get("FunctionError"), "payload": json.loads(response["Payload"].read())}


def _job_data(stack: LocalStack) -> tuple[int, int, int]:
    items = stack.client("dynamodb").scan(TableName=stack.outputs["JobsTableName"])["Count"]
    messages = sum(len(stack.messages(stack.outputs[k])) for k in ("FalJobQueueUrl", "ReplicateJobQueueUrl"))
    return items, messages, len(stack.outcome_events())


HEARTBEAT = "Agent/RoutingManager/Heartbeat"  # account-wide: tests compare before and after


def test_canary_publishes_heartbeat_and_touches_no_job_data(fresh_stack: LocalStack) -> None:
    before = _job_data(fresh_stack)
    beats = _datapoints(fresh_stack, HEARTBEAT)
    result = _invoke_heartbeat(fresh_stack)
    assert result == {"error": None, "payload": {
        "heartbeat": 1, "outcome": "route", "provider": "fal", "rule": "short-720p-to-fal", "reason": None,
        "providers": {"fal": {"fal": "available", "fal#wan-i2v": "available", "fal@eu-west-1": "available",
                              "fal@us-east-1": "available"},
                      "replicate": {"replicate": "available", "replicate#minimax/video-01": "available"}}}}
    assert _datapoints(fresh_stack, HEARTBEAT) == beats + 1
    assert _job_data(fresh_stack) == before
    assert fresh_stack.rules.invocations == 1


@pytest.mark.parametrize("fault", [RuntimeError("rules broken"), "ServiceException"])
def test_no_heartbeat_when_the_rules_lambda_fails(fresh_stack: LocalStack, fault: object) -> None:
    fresh_stack.rules.faults[:] = [fault]
    beats = _datapoints(fresh_stack, HEARTBEAT)
    result = _invoke_heartbeat(fresh_stack)
    assert result["error"] == "Unhandled"
    assert result["payload"]["errorType"] in ("CanaryFailed", "ServiceException")
    assert _datapoints(fresh_stack, HEARTBEAT) == beats


def test_no_heartbeat_when_the_canary_job_would_not_route(fresh_stack: LocalStack) -> None:
    def rejecting(event: object, invoke: Callable[[object], Result]) -> Result:
        answer = invoke(event).json()
        return Result(json.dumps({**answer, "outcome": "reject", "reason": "no_route"}).encode())

    fresh_stack.rules.intercept = rejecting
    beats = _datapoints(fresh_stack, HEARTBEAT)
    result = _invoke_heartbeat(fresh_stack)
    assert result["error"] == "Unhandled" and "not routed: no_route" in result["payload"]["errorMessage"]
    assert _datapoints(fresh_stack, HEARTBEAT) == beats


def test_the_canary_sees_provider_state_and_the_heartbeat_reports_it(fresh_stack: LocalStack) -> None:
    table = fresh_stack.outputs["ProviderStateTableName"]
    ddb = fresh_stack.client("dynamodb")
    ddb.put_item(TableName=table, Item={"pk": {"S": "state"}, "sk": {"S": "fal"}, "disabledReason": {"S": "drill"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "state"}, "sk": {"S": "replicate#minimax/video-01"},
                                        "breakerOpenUntil": {"N": "9999999999"}})
    beats = _datapoints(fresh_stack, HEARTBEAT)
    result = _invoke_heartbeat(fresh_stack)["payload"]
    # No provider can take the canary now: the router still works, so the heartbeat is published.
    assert (result["outcome"], result["reason"]) == ("unavailable", "no_available_provider")
    assert _datapoints(fresh_stack, HEARTBEAT) == beats + 1
    assert result["providers"]["fal"]["fal"] == "disabled"
    assert result["providers"]["replicate"]["replicate#minimax/video-01"] == "open"

    def seen(metric: str, provider: str, statistic: str) -> float:
        """Metrics are account-wide here: the other tests' heartbeats published all-available (1, 0)."""
        now = datetime.now(UTC)
        [point] = fresh_stack.client("cloudwatch").get_metric_statistics(
            Namespace="VideoJobRouting", MetricName=metric, Dimensions=[{"Name": "provider", "Value": provider}],
            StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=5), Period=600,
            Statistics=[statistic])["Datapoints"]
        return float(point[statistic])

    assert (seen("ProviderAvailable", "fal", "Minimum"), seen("ProviderAvailable", "replicate", "Minimum")) == (0, 0)
    assert seen("ProviderBreakerOpen", "replicate", "Maximum") == 1


def test_duplicates_and_failures_are_counted(fresh_stack: LocalStack) -> None:
    detail = job()
    submit(fresh_stack, detail)
    submit(fresh_stack, detail)
    fresh_stack.rules.faults[:] = [RuntimeError("boom")]
    submit(fresh_stack, job())

    def count(outcome: str) -> float:
        return _datapoints(fresh_stack, "RoutingAttempts", [
            {"Name": "provider", "Value": "none"}, {"Name": "outcome", "Value": outcome},
            {"Name": "service", "Value": "routing-manager"}])

    assert (count("duplicate"), count("failed")) == (1, 1)


def test_rejections_without_a_record_are_counted(fresh_stack: LocalStack) -> None:
    """The rules Lambda counts the rejections it decides (EMF); the workflow counts those it announces
    without a record: a missing jobId never reaches the Lambda."""
    submit(fresh_stack, job(jobId=None), job(jobId="x" * 600))
    rejected = _datapoints(fresh_stack, "RoutingAttempts", [
        {"Name": "provider", "Value": "none"}, {"Name": "outcome", "Value": "rejected"},
        {"Name": "service", "Value": "routing-manager"}])
    assert rejected == 2
