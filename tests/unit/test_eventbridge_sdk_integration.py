"""moto names EventBridge's SDK integration as boto3 does (`events`); Step Functions calls it
`eventbridge` (arn:aws:states:::aws-sdk:eventbridge:putEvents). The adapter makes both work."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.local_stack


def test_aws_sdk_eventbridge_put_events_runs_on_moto() -> None:
    import boto3

    from routing_manager.local import moto_adapters
    from routing_manager.local import stack as local_stack

    moto_adapters.install()  # once per process, as the deploying fixtures do (applying twice is refused)
    with local_stack.mocked_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        definition = {"StartAt": "AnnounceIt", "States": {"AnnounceIt": {
            "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:eventbridge:putEvents",
            "Parameters": {"Entries": [{"Source": "routing.manager", "DetailType": "probe", "Detail": "{}"}]},
            "End": True}}}
        arn = sfn.create_state_machine(name="probe", definition=json.dumps(definition), type="STANDARD",
                                       roleArn="arn:aws:iam::123456789012:role/r")["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        deadline = time.monotonic() + 60  # until it ends: a bound for a hang, not for the machine's speed
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING" \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert described["status"] == "SUCCEEDED", described.get("cause")
        assert json.loads(described["output"])["FailedEntryCount"] == 0
