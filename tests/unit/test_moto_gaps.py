"""Each gap between moto (pinned 5.2.5) and AWS that an adapter fills, shown twice: with the adapter
the local stack behaves as AWS documents; without it, moto still does not (a strict xfail). When a
moto upgrade closes a gap, its "without" case passes, the strict xfail fails, and the adapter can go.

Not here: `allow_deep_json` (it raises Python's recursion limit, which nothing lowers again within
a process) and `definition_substitutions_as_join` (a template transform: its gap case is below too).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from routing_manager.local import moto_adapters as adapters
from routing_manager.local.stack import mocked_aws
from tests.doubles import HandlerFunction
from tests.unit.test_moto_adapters import _execution_log, _logged_machine, _machine, _wait

pytestmark = pytest.mark.local_stack
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/r"


@pytest.fixture
def aws_without(request: pytest.FixtureRequest) -> Iterator[None]:
    """moto with every adapter but the one the test names (None: all of them)."""
    adapters.uninstall()
    left_out = request.param
    with adapters.adapted(without=(left_out,) if left_out else ()), mocked_aws():
        yield


def with_and_without(adapter: Callable[..., None], gap: str) -> Any:
    return pytest.mark.parametrize("aws_without", [
        pytest.param(None, id="adapted"),
        pytest.param(adapter, id="moto-alone", marks=pytest.mark.xfail(strict=True, reason=f"moto 5.2.5: {gap}")),
    ], indirect=True)


def _api_machine(definition: dict[str, Any], kind: str = "EXPRESS") -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn: str = sfn.create_state_machine(name=f"m{uuid.uuid4().hex[:8]}", definition=json.dumps(definition),
                                        roleArn=ROLE, type=kind)["stateMachineArn"]
    return arn


def _run(arn: str, execution_input: dict[str, Any] | None = None) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex,
                                    input=json.dumps(execution_input or {}))["executionArn"]
    return _wait(execution)


PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}


@with_and_without(adapters.route_cfn_state_machines, "a state machine CloudFormation creates does not execute")
def test_a_cloudformation_state_machine_executes(aws_without: None) -> None:
    assert _run(_machine(PASS))["status"] == "SUCCEEDED"


@with_and_without(adapters.deliver_events_to_step_functions, "a rule's Step Functions target is never started")
def test_an_event_starts_the_rules_state_machine(aws_without: None) -> None:
    arn = _api_machine(PASS)
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="r", EventPattern=json.dumps({"source": ["t"]}))
    events.put_targets(Rule="r", Targets=[{"Id": "sm", "Arn": arn, "RoleArn": ROLE}])
    events.put_events(Entries=[{"Source": "t", "DetailType": "d", "Detail": "{}"}])
    assert adapters.execution_statuses(arn)


@with_and_without(adapters.invoke_lambda_functions, "Lambda without Docker does not run the handler")
def test_a_lambda_runs_its_handler(aws_without: None) -> None:
    lam = boto3.client("lambda", region_name=REGION)
    role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    arn = lam.create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="a.h",
                              Code={"ZipFile": b"x"})["FunctionArn"]
    adapters.LOCAL_FUNCTIONS[arn] = HandlerFunction(handler=lambda event: {"ran": True})
    try:
        payload = json.loads(lam.invoke(FunctionName="f", Payload=b"{}")["Payload"].read())
    finally:
        adapters.LOCAL_FUNCTIONS.pop(arn)
    assert payload == {"ran": True}


@with_and_without(adapters.serialize_dynamodb_requests, "two conditional writes to one item can both succeed")
def test_a_conditional_claim_has_one_winner(aws_without: None) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from unittest import mock

    import moto.dynamodb.models as ddb_models

    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")

    # Two claims meet between moto's read of the item and its condition check, every time: the
    # race is forced, not hoped for. With the adapter the second cannot enter while the first
    # waits, so the meeting times out and the claims run one after the other.
    meeting = threading.Barrier(2, timeout=1)
    parser = ddb_models.create_condition_expression_parser

    def parse_then_meet(*args: Any, **kwargs: Any) -> Any:
        parsed = parser(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            meeting.wait()
        return parsed

    def claim(i: int) -> bool:
        try:
            ddb.update_item(TableName="t", Key={"k": {"S": "job"}}, UpdateExpression="SET holder = :me",
                            ConditionExpression="attribute_not_exists(holder)",
                            ExpressionAttributeValues={":me": {"S": str(i)}})
            return True
        except ClientError:
            return False

    with mock.patch.object(ddb_models, "create_condition_expression_parser", parse_then_meet), \
            ThreadPoolExecutor(2) as pool:
        winners = sum(pool.map(claim, range(2)))
    assert winners == 1


@with_and_without(adapters.failure_causes_as_text, "a FailedEntry's cause is PutEvents' response object")
def test_a_task_failure_cause_is_text(aws_without: None) -> None:
    arn = _api_machine({"StartAt": "Emit", "States": {"Emit": {
        "Type": "Task", "Resource": "arn:aws:states:::events:putEvents", "End": True,
        "Parameters": {"Entries": [{"Source": "s", "DetailType": "d"}]}}}})  # no Detail: a failed entry
    done = _run(arn)
    assert (done["status"], done["error"]) == ("FAILED", "EventBridge.FailedEntry")
    assert isinstance(json.loads(done["cause"]), dict)  # JSON text, as AWS writes a cause


@with_and_without(adapters.run_express_machines_as_express, "every execution runs as STANDARD")
def test_an_express_machine_runs_as_express(aws_without: None) -> None:
    arn = _api_machine(PASS)
    machine = adapters._parser_backend(arn).describe_state_machine(arn)
    assert machine.sm_type == "EXPRESS"


@pytest.mark.skipif(os.environ.get(adapters.SPEED_UPS_ENV) == "0", reason="speed-ups off: 5 minutes of real waits")
@with_and_without(adapters.enforce_express_time_limit, "an EXPRESS execution never times out")
def test_an_express_execution_times_out_after_five_minutes(aws_without: None) -> None:
    arn = _api_machine({"StartAt": "Read", "States": {"Read": {
        "Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem", "End": True,
        "Parameters": {"TableName": "missing", "Key": {"k": {"S": "x"}}},
        # 160 + 160 seconds of waits: past the 300-second limit (3.2 s, compressed)
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 160, "MaxAttempts": 2, "BackoffRate": 1}]}}})
    assert _run(arn)["status"] == "TIMED_OUT"


@with_and_without(adapters.enforce_state_payload_quota,
                  "a task input over 256 KiB is sent, and States.ALL catches States.DataLimitExceeded")
def test_a_task_input_over_the_quota_fails_past_its_catch(aws_without: None) -> None:
    url = boto3.client("sqs", region_name=REGION).create_queue(
        QueueName="big", Attributes={"MaximumMessageSize": "1048576"})["QueueUrl"]
    arn = _api_machine({"StartAt": "Send", "States": {
        "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True,
                 "Parameters": {"QueueUrl": url, "MessageBody": {"a.$": "$.half", "b.$": "$.half"}},
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}]},
        "Caught": {"Type": "Succeed"}}})
    done = _run(arn, {"half": "x" * 140_000})
    assert (done["status"], done.get("error")) == ("FAILED", "States.DataLimitExceeded")


@with_and_without(adapters.enforce_event_entry_size, "PutEvents takes an entry of any size")
def test_an_event_over_256_kib_is_refused(aws_without: None) -> None:
    answer = boto3.client("events", region_name=REGION).put_events(
        Entries=[{"Source": "s", "DetailType": "d", "Detail": json.dumps({"p": "x" * 262_144})}])
    assert answer["FailedEntryCount"] == 1


@with_and_without(adapters.enforce_sqs_message_size, "a queue takes 1 MiB by default, counted in characters")
def test_a_message_over_256_kib_is_refused_by_default(aws_without: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=f"q{uuid.uuid4().hex[:8]}")["QueueUrl"]
    with pytest.raises(ClientError, match="shorter than 262144 bytes"):
        sqs.send_message(QueueUrl=url, MessageBody="é" * 140_000)


@pytest.mark.xfail(strict=True, reason="moto 5.2.5: CloudFormation ignores DefinitionSubstitutions")
@pytest.mark.parametrize("aws_without", [None], indirect=True)
def test_moto_applies_definition_substitutions(aws_without: None) -> None:
    cfn = boto3.client("cloudformation", region_name=REGION)
    template = {"Resources": {"M": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "StateMachineType": "EXPRESS", "RoleArn": ROLE, "DefinitionSubstitutions": {"Result": "substituted"},
        "DefinitionString": json.dumps({"StartAt": "P", "States": {"P": {
            "Type": "Pass", "Result": "${Result}", "End": True}}})}}},
        "Outputs": {"Arn": {"Value": {"Ref": "M"}}}}
    cfn.create_stack(StackName="subs", TemplateBody=json.dumps(template))
    arn = cfn.describe_stacks(StackName="subs")["Stacks"][0]["Outputs"][0]["OutputValue"]
    assert json.loads(_run(arn)["output"]) == "substituted"


def _function(handler: Any) -> str:
    lam = boto3.client("lambda", region_name=REGION)
    role = boto3.client("iam").create_role(RoleName=f"r{uuid.uuid4().hex[:6]}",
                                           AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    name = f"f{uuid.uuid4().hex[:8]}"
    arn: str = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="a.h",
                                   Code={"ZipFile": b"x"})["FunctionArn"]
    adapters.LOCAL_FUNCTIONS[arn] = HandlerFunction(handler=handler, name=name)
    return arn


@with_and_without(adapters.deliver_events_to_step_functions, "a rule's Lambda target is never invoked")
def test_an_event_invokes_the_rules_lambda_target(aws_without: None) -> None:
    seen: list[Any] = []
    arn = _function(lambda event: seen.append(event))
    try:
        events = boto3.client("events", region_name=REGION)
        events.put_rule(Name="to-lambda", EventPattern=json.dumps({"source": ["t"]}))
        events.put_targets(Rule="to-lambda", Targets=[{"Id": "fn", "Arn": arn}])
        events.put_events(Entries=[{"Source": "t", "DetailType": "d", "Detail": '{"n": 1}'}])
    finally:
        adapters.LOCAL_FUNCTIONS.pop(arn)
    assert [e["detail"] for e in seen] == [{"n": 1}]


def _saturation_alarm_template() -> str:
    return json.dumps({"Resources": {"Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": "stack-saturated-fal", "Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
        "Dimensions": [{"Name": "QueueName", "Value": "FalJobQueue"}], "Statistic": "Maximum", "Period": 60,
        "EvaluationPeriods": 1, "Threshold": 300, "ComparisonOperator": "GreaterThanThreshold"}}}})


@with_and_without(adapters.create_cfn_alarms, "CloudFormation skips AWS::CloudWatch::Alarm")
def test_a_cloudformation_alarm_exists(aws_without: None) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="alarms", TemplateBody=_saturation_alarm_template())
    [alarm] = boto3.client("cloudwatch", region_name=REGION).describe_alarms()["MetricAlarms"]
    assert (alarm["AlarmName"], alarm["Threshold"]) == ("stack-saturated-fal", 300)


@with_and_without(adapters.announce_alarm_state_changes, "an alarm state change sends no event")
def test_an_alarm_state_change_reaches_eventbridge(aws_without: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="alarm-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name="alarms", EventPattern=json.dumps({"source": ["aws.cloudwatch"]}))
    events.put_targets(Rule="alarms", Targets=[{"Id": "q", "Arn": queue_arn}])
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(AlarmName="stack-saturated-fal", Namespace="AWS/SQS", MetricName="M",
                                Statistic="Maximum", Period=60, EvaluationPeriods=1, Threshold=1,
                                ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName="stack-saturated-fal", StateValue="ALARM", StateReason="test")
    [message] = sqs.receive_message(QueueUrl=url).get("Messages", [])
    event = json.loads(message["Body"])
    assert (event["detail-type"], event["detail"]["state"]["value"]) == ("CloudWatch Alarm State Change", "ALARM")


@with_and_without(adapters.log_executions_to_cloudwatch, "an execution writes nothing to its machine's log group")
def test_an_execution_writes_its_history_to_its_log_group(aws_without: None) -> None:
    machine, group = _logged_machine(PASS, "ALL")
    arn = boto3.client("stepfunctions", region_name=REGION).start_execution(stateMachineArn=machine)["executionArn"]
    _wait(arn)
    assert "PassStateEntered" in [e["type"] for e in _execution_log(group, arn)]


@with_and_without(adapters.name_eventbridge_sdk_integration,
                  "aws-sdk:eventbridge is looked up as a boto3 service named eventbridge (it is events)")
def test_the_eventbridge_sdk_integration_runs(aws_without: None) -> None:
    arn = _api_machine({"StartAt": "Put", "States": {"Put": {
        "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:eventbridge:putEvents", "End": True,
        "Parameters": {"Entries": [{"Source": "routing.manager", "DetailType": "probe", "Detail": "{}"}]}}}})
    done = _run(arn)
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"])["FailedEntryCount"] == 0


@with_and_without(adapters.indefinite_paths_as_lists,
                  "an indefinite JSONPath matching nothing fails, and one matching once is the bare value")
def test_an_indefinite_path_is_always_a_list(aws_without: None) -> None:
    arn = _api_machine({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True, "Parameters": {
        "none.$": "$.tens[*].lost[*]", "one.$": "$.outcomes[*].counted.failed"}}}})
    done = _run(arn, {"tens": [{"lost": []}], "outcomes": [{"counted": {"failed": 1}}, {"counted": {}}]})
    assert done["status"] == "SUCCEEDED", done.get("cause")
    assert json.loads(done["output"]) == {"none": [], "one": [1]}


@with_and_without(adapters.give_task_timeouts_headroom,
                  "a task slower in one loaded process than its TimeoutSeconds times out, though it succeeds")
def test_a_task_slowed_by_the_local_process_is_not_timed_out(aws_without: None) -> None:
    import time as clock

    from moto.dynamodb.models import DynamoDBBackend

    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName="slow", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    arn = _api_machine({"StartAt": "Read", "States": {"Read": {
        "Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem", "TimeoutSeconds": 1, "End": True,
        "Parameters": {"TableName": "slow", "Key": {"k": {"S": "x"}}}}}})
    original = DynamoDBBackend.get_item

    def slow_get_item(backend: Any, *args: Any, **kwargs: Any) -> Any:
        clock.sleep(1.5)  # the GIL and the lock, as a loaded local stack makes a call wait
        return original(backend, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DynamoDBBackend, "get_item", slow_get_item)
        assert _run(arn)["status"] == "SUCCEEDED"


def _create_stack(name: str, resources: dict[str, Any], outputs: dict[str, Any] | None = None) -> dict[str, str]:
    import warnings

    cfn = boto3.client("cloudformation", region_name=REGION)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto warns of a resource type it skips
        cfn.create_stack(StackName=name, TemplateBody=json.dumps({"Resources": resources, "Outputs": outputs or {}}))
    [stack] = cfn.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@with_and_without(adapters.share_global_table_replicas,
                  "CloudFormation skips AWS::DynamoDB::GlobalTable, and a replica region has no table")
def test_a_global_table_replica_sees_the_latest_claim(aws_without: None) -> None:
    _create_stack("global-table", {"Claims": {"Type": "AWS::DynamoDB::GlobalTable", "Properties": {
        "TableName": "claims", "BillingMode": "PAY_PER_REQUEST", "MultiRegionConsistency": "STRONG",
        "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
        "GlobalTableWitnesses": [{"Region": "us-east-2"}],
        "Replicas": [{"Region": REGION}, {"Region": "us-west-2"}]}}})

    def claim(region: str) -> bool:
        try:
            boto3.client("dynamodb", region_name=region).update_item(
                TableName="claims", Key={"k": {"S": "job"}}, UpdateExpression="SET holder = :me",
                ConditionExpression="attribute_not_exists(holder)", ExpressionAttributeValues={":me": {"S": region}})
            return True
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False

    # MRSC: the second region's condition is checked against the first region's write.
    assert [claim("us-west-2"), claim(REGION)] == [True, False]
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName="claims", Key={"k": {"S": "job"}}, ConsistentRead=True)["Item"]
    assert item["holder"] == {"S": "us-west-2"}


@with_and_without(adapters.create_cfn_global_endpoints,
                  "no EventBridge global endpoints: a stack whose Outputs read one fails to create")
def test_a_global_endpoint_has_its_id(aws_without: None) -> None:
    outputs = _create_stack("global-endpoint", {"Endpoint": {"Type": "AWS::Events::Endpoint", "Properties": {
        "Name": "submissions", "EventBuses": [{"EventBusArn": f"arn:aws:events:{r}:123456789012:event-bus/b"}
                                              for r in (REGION, "us-west-2")],
        "RoutingConfig": {"FailoverConfig": {"Primary": {"HealthCheck": "arn:aws:route53:::healthcheck/h"},
                                             "Secondary": {"Route": "us-west-2"}}},
        "ReplicationConfig": {"State": "DISABLED"}}}},
        {"Id": {"Value": {"Fn::GetAtt": ["Endpoint", "EndpointId"]}}})
    assert outputs["Id"]
