"""moto_adapters.evaluate_metric_alarms: the local stack evaluates alarms, metric math included, as
CloudWatch does each minute (moto never evaluates one)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from routing_manager.local import moto_adapters
from routing_manager.local.stack import mocked_aws

ACCOUNT, REGION = "123456789012", "us-east-1"
# The shape of the template's canary-rejections alarm: FILL, then IF over a share.
SHARE = [
    *({"Id": outcome, "ReturnData": False, "MetricStat": {"Metric": {
        "Namespace": "N", "MetricName": "Decisions", "Dimensions": [{"Name": "outcome", "Value": outcome}]},
        "Period": 300, "Stat": "Sum"}} for outcome in ("rejected", "unavailable", "routed")),
    {"Id": "bad", "ReturnData": False, "Expression": "FILL(rejected, 0) + FILL(unavailable, 0)"},
    {"Id": "decided", "ReturnData": False, "Expression": "bad + FILL(routed, 0)"},
    {"Id": "share", "ReturnData": True, "Expression": "IF(decided >= 5, bad / decided, 0)"},
]


@pytest.fixture
def cloudwatch() -> Iterator[Any]:
    moto_adapters.install()
    with mocked_aws():
        client = boto3.client("cloudwatch", region_name=REGION)
        client.put_metric_alarm(AlarmName="share", Metrics=SHARE, EvaluationPeriods=1, Threshold=0.2,
                                ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching")
        yield client


def decided(cloudwatch: Any, **counts: int) -> None:
    cloudwatch.put_metric_data(Namespace="N", MetricData=[
        {"MetricName": "Decisions", "Value": 1, "Dimensions": [{"Name": "outcome", "Value": outcome}]}
        for outcome, n in counts.items() for _ in range(n)])


def state(cloudwatch: Any) -> str:
    value: str = cloudwatch.describe_alarms(AlarmNames=["share"])["MetricAlarms"][0]["StateValue"]
    return value


def test_a_metric_math_share_alarms_when_over_its_threshold(cloudwatch: Any) -> None:
    decided(cloudwatch, rejected=2, routed=3)  # no "unavailable" datapoint: FILL makes it 0
    assert moto_adapters.evaluate_metric_alarms(ACCOUNT, REGION) == ["share"]
    assert state(cloudwatch) == "ALARM"


def test_too_few_decisions_are_no_evidence(cloudwatch: Any) -> None:
    decided(cloudwatch, rejected=4)  # 100 % of 4: under the 5 the expression asks for
    moto_adapters.evaluate_metric_alarms(ACCOUNT, REGION)
    assert state(cloudwatch) == "OK"


def test_without_fill_a_missing_metric_blanks_the_expression(cloudwatch: Any) -> None:
    unfilled = [q if q["Id"] != "bad" else {**q, "Expression": "rejected + unavailable"} for q in SHARE]
    cloudwatch.put_metric_alarm(AlarmName="share", Metrics=unfilled, EvaluationPeriods=1, Threshold=0.2,
                                ComparisonOperator="GreaterThanThreshold")
    decided(cloudwatch, rejected=5, routed=1)
    assert moto_adapters.evaluate_metric_alarms(ACCOUNT, REGION) == []  # as CloudWatch: no value, no change
    assert state(cloudwatch) != "ALARM"  # 5 of 6 rejected, yet nothing to evaluate


def test_math_the_local_stack_cannot_evaluate_leaves_the_alarm_alone(cloudwatch: Any) -> None:
    odd = [*SHARE[:3], {"Id": "share", "ReturnData": True, "Expression": "ANOMALY_DETECTION_BAND(routed)"}]
    cloudwatch.put_metric_alarm(AlarmName="share", Metrics=odd, EvaluationPeriods=1, Threshold=0.2,
                                ComparisonOperator="GreaterThanThreshold")
    decided(cloudwatch, rejected=5, routed=1)
    assert moto_adapters.evaluate_metric_alarms(ACCOUNT, REGION) == []
