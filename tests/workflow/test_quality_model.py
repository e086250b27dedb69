"""The quality model on the local stack (issue 25 item 4): outcomes put on the bus become segment statistics
through the provider events function, the scheduled quality model function (invoked as its schedule would)
fits them into coefficients in the control table, and the rules function's cached read takes them: a
best-value rule moves the segment where the model says its provider is weak, and only that segment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack
from tests.support import deploy_with_table, job, submit
from tests.workflow.test_provider_stats import eventually, outcome

MAX_JOBS = 40  # jobs submitted, one at a time, until the rules function's cached read takes the new model
TINY, SHORT = "0-5/720p/a0", "5-10/720p/a0"  # 3 s and 8 s clips (routing_core.quality.segment)
FAL = "fal/wan-i2v"


@pytest.fixture
def best_value(aws: None, tmp_path: Path) -> Iterator[LocalStack]:
    def change(table: dict[str, Any]) -> None:
        table["rules"][0].update(strategy="best-value", maxExploration=0)  # greedy: each choice is the posterior's
    deployed = deploy_with_table(tmp_path, change)
    yield deployed
    local_stack.release(deployed)


def fit(stack: LocalStack) -> dict[str, Any]:
    """Run the quality model function as its 15-minute schedule does; the model it wrote, as the table holds it."""
    response = stack.client("lambda").invoke(FunctionName=stack.outputs["QualityModelFunctionName"])
    assert "FunctionError" not in response, response["Payload"].read()
    item = stack.client("dynamodb").get_item(TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
                                             Key={"pk": {"S": "stats"}, "sk": {"S": "~quality-model"}})["Item"]
    model: dict[str, Any] = json.loads(item["model"]["S"])
    return model


def segment_samples(stack: LocalStack) -> float:
    items = stack.client("dynamodb").query(
        TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "qstats"}})["Items"]
    return sum(float(i["samples"]["N"]) for i in items)


def route(stack: LocalStack, length: float) -> str | None:
    [result] = submit(stack, job(lengthSec=length), timeout=60)
    assert result.status == "ROUTED", result
    return result.provider


def test_outcomes_fit_the_quality_model_and_move_a_best_value_choice_for_the_weak_segment_only(
        best_value: LocalStack) -> None:
    stack = best_value
    assert fit(stack)["scopes"] == {}  # no outcome yet: nothing to fit
    # Twenty 3 s and twenty 8 s jobs, all to fal (cheaper than replicate, and nothing is known of either).
    tiny = submit(stack, *(job(lengthSec=3) for _ in range(20)), timeout=120)
    short = submit(stack, *(job(lengthSec=8) for _ in range(20)), timeout=120)
    assert {r.provider for r in tiny + short} == {"fal"}
    # fal's 3 s clips come back unusable (0), its 8 s ones perfect (1): on average 0.5, as unknown replicate is.
    for r in tiny:
        outcome(stack, "completed", jobId=r.jobId, durationSec=20.0, qualityScore=0.0)
    for r in short:
        outcome(stack, "completed", jobId=r.jobId, durationSec=40.0, qualityScore=1.0)
    eventually(lambda: segment_samples(stack) == 40, "the forty outcomes to become segment statistics")
    # The live statistics alone cannot tell the segments apart: fal, at $0.24 against replicate's $0.50 for a
    # 3 s clip, still takes one.
    assert route(stack, 3) == "fal"

    scope = fit(stack)["scopes"][FAL]
    (p_tiny, q_tiny, n_tiny), (p_short, q_short, n_short) = scope["segments"][TINY], scope["segments"][SHORT]
    # Twenty each, weighted by their hourly bucket's age past its middle (0.986 at most half an hour on).
    assert (n_tiny, n_short) == (pytest.approx(20, abs=0.3), pytest.approx(20, abs=0.3))
    # Shrunk towards fal's pooled 0.5 by 10 pseudo-scores: (10 x 0.5 + 0) / 30 and (10 x 0.5 + 20) / 30.
    assert (q_tiny, scope["prior"][1], q_short) == pytest.approx((0.1667, 0.5, 0.8333), abs=0.01)
    assert p_tiny > 0.9 and p_short > 0.9  # every job completed

    # Now the rules function takes the model at its next statistics read: fal's expected quality for a 3 s clip
    # is its live 0.5 times the segment's ratio 1/3, under replicate's 0.5 per dollar: 3 s jobs move there.
    seen = []
    for _ in range(MAX_JOBS):
        seen.append(route(stack, 3))
        if seen[-1] == "replicate":
            break
    assert seen[-1] == "replicate" and set(seen[:-1]) <= {"fal"}, seen
    assert route(stack, 8) == "fal"  # the segment where fal is good stays with fal


def _fits_counted(stack: LocalStack) -> float:
    now = datetime.now(UTC)
    points = stack.client("cloudwatch").get_metric_statistics(
        Namespace="VideoJobRouting", MetricName="QualityModelFits",
        Dimensions=[{"Name": "service", "Value": "routing-manager"}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5), Period=3600,
        Statistics=["Sum"])["Datapoints"]
    return sum(p["Sum"] for p in points)


def test_each_fit_written_counts_the_metric_the_stale_alarm_watches(stack: LocalStack) -> None:
    before = _fits_counted(stack)
    fit(stack)
    fit(stack)
    assert _fits_counted(stack) == before + 2
    [alarm] = stack.client("cloudwatch").describe_alarms(
        AlarmNames=[f"{stack.name}-quality-model-stale"])["MetricAlarms"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"], alarm["TreatMissingData"]) == (
        "VideoJobRouting", "QualityModelFits", [{"Name": "service", "Value": "routing-manager"}], "breaching")
