"""Each adapter over a moto gap, on its own (the workflow tests exercise them together)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from routing_manager.local import moto_adapters
from routing_manager.local.stack import mocked_aws
from tests.doubles import HandlerFunction

pytestmark = pytest.mark.local_stack
needs_compressed_waits = pytest.mark.skipif(
    os.environ.get(moto_adapters.SPEED_UPS_ENV) == "0",
    reason="speed-ups off: retry waits are real, and this test would wait minutes")


@pytest.fixture(autouse=True)
def adapters(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every adapter for the test, and none after it (a stack another module deployed may have left
    them installed process-wide: that is undone first). `own_adapters` tests apply their own."""
    moto_adapters.uninstall()
    if request.node.get_closest_marker("own_adapters"):
        yield
        return
    with moto_adapters.adapted():
        yield


def test_definition_substitutions_become_a_join_keeping_context_paths() -> None:
    template = {"Resources": {"M": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "DefinitionString": {"Fn::Join": ["\n", ['{"a": "${Table}",', '"b.$": "$$.Execution.Id"}']]},
        "DefinitionSubstitutions": {"Table": {"Ref": "T"}}}}}}
    props = moto_adapters.definition_substitutions_as_join(template)["Resources"]["M"]["Properties"]
    assert "DefinitionSubstitutions" not in props
    assert props["DefinitionString"] == {"Fn::Join": ["", ['{"a": "', {"Ref": "T"}, '",\n"b.$": "$$.Execution.Id"}']]}


def test_an_undefined_substitution_is_an_error() -> None:
    template = {"Resources": {"M": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
        "DefinitionString": '{"a": "${Nope}"}', "DefinitionSubstitutions": {"Table": "t"}}}}}
    with pytest.raises(ValueError, match=r"\$\{Nope\}"):
        moto_adapters.definition_substitutions_as_join(template)


def _machine(definition: dict) -> str:  # type: ignore[type-arg]
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
        "M": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "StateMachineType": "EXPRESS", "DefinitionString": json.dumps(definition),
            "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}}}},
        "Outputs": {"Arn": {"Value": {"Ref": "M"}}}}
    name = f"s{time.monotonic_ns()}"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    return cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"]


def _wait(arn: str) -> dict:  # type: ignore[type-arg]
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    for _ in range(2000):
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        time.sleep(0.005)
    raise AssertionError("execution did not end")


def test_cfn_state_machines_execute_and_events_start_them() -> None:
    with mocked_aws():
        arn = _machine({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["t"]}))
        events.put_targets(Rule="r", Targets=[{"Id": "sm", "Arn": arn, "RoleArn": "arn:aws:iam::1:role/x"}])
        events.put_events(Entries=[{"Source": "t", "DetailType": "d", "Detail": '{"k": 1}'}])
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
        done = _wait(execution["executionArn"])
        envelope = json.loads(done["output"])
        assert done["status"] == "SUCCEEDED"
        assert (envelope["source"], envelope["detail-type"], envelope["detail"]) == ("t", "d", {"k": 1})
        assert envelope["time"].endswith("Z")  # the envelope's time as AWS writes it


def test_lambda_errors_come_back_as_aws_reports_them() -> None:
    with mocked_aws():
        # No client-side retries, as the interpreter's own client: boto3 would retry the throttle.
        lam = boto3.client("lambda", region_name="us-east-1",
                           config=Config(retries={"max_attempts": 0, "total_max_attempts": 1}))
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        arn = lam.create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="a.h",
                                  Code={"ZipFile": b"x"})["FunctionArn"]

        fn = HandlerFunction(handler=lambda event: {"echo": event},
                             faults=["TooManyRequestsException", ValueError("bad")])
        moto_adapters.LOCAL_FUNCTIONS[arn] = fn
        try:
            with pytest.raises(lam.exceptions.TooManyRequestsException):
                lam.invoke(FunctionName="f", Payload=b"{}")
            unhandled = lam.invoke(FunctionName="f", Payload=b"{}")
            assert unhandled["FunctionError"] == "Unhandled"
            assert json.loads(unhandled["Payload"].read())["errorType"] == "ValueError"
            ok = lam.invoke(FunctionName="f", Payload=b'{"a": 1}')
            assert json.loads(ok["Payload"].read()) == {"echo": {"a": 1}}
            assert fn.invocations == 3
        finally:
            moto_adapters.LOCAL_FUNCTIONS.pop(arn)


@needs_compressed_waits
def test_retry_waits_are_compressed_yet_every_attempt_runs() -> None:
    """Through moto: two retries of 2 s and 4 s take well under a second, and all three attempts run."""
    with mocked_aws():
        arn = _machine({"StartAt": "Read", "States": {"Read": {
            "Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem", "End": True,
            "Parameters": {"TableName": "missing", "Key": {"k": {"S": "x"}}},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 2}]}}})
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        started = time.monotonic()
        execution = sfn.start_execution(stateMachineArn=arn, name="retried")["executionArn"]
        assert _wait(execution)["status"] == "FAILED"
        assert time.monotonic() - started < 1.0
        history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
        assert sum(e["type"] == "TaskScheduled" for e in history) == 3


@pytest.mark.own_adapters
def test_patches_are_undone_after_the_block() -> None:
    from moto.events.models import Rule
    from moto.stepfunctions.parser.asl.component.program.program import Program

    originals = (Rule.send_to_targets, Program.eval)
    with moto_adapters.adapted():
        assert (Rule.send_to_targets, Program.eval) != originals
        with pytest.raises(RuntimeError, match="already applied"), moto_adapters.adapted():
            pass
    assert (Rule.send_to_targets, Program.eval) == originals


@pytest.mark.own_adapters
def test_speed_ups_can_be_left_out() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    with moto_adapters.adapted(speed_ups=False):
        definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        assert AmazonStateLanguageParser.parse(definition) is not AmazonStateLanguageParser.parse(definition)


def test_definition_and_json_path_parses_are_reused() -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.utils import json_path

    definition = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
    assert AmazonStateLanguageParser.parse(definition) is AmazonStateLanguageParser.parse(definition)
    assert json_path.parse("$.a.b") is json_path.parse("$.a.b")
    assert json_path.extract_json("$.a.b", {"a": {"b": 3}}) == 3


def test_concurrent_executions_of_one_shared_program_count_their_own_retries() -> None:
    with mocked_aws():
        arn = _machine({"StartAt": "Read", "States": {"Read": {
            "Type": "Task", "Resource": "arn:aws:states:::dynamodb:getItem", "End": True,
            "Parameters": {"TableName": "missing", "Key": {"k": {"S": "x"}}},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2}]}}})
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        started = [sfn.start_execution(stateMachineArn=arn)["executionArn"] for _ in range(8)]
        for execution in started:
            assert _wait(execution)["status"] == "FAILED"
            history = sfn.get_execution_history(executionArn=execution, maxResults=1000)["events"]
            assert sum(e["type"] == "TaskScheduled" for e in history) == 3  # first try + 2 retries


def test_queue_counts_in_one_pass_match_what_sqs_reports() -> None:
    with mocked_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="depth")["QueueUrl"]
        for i in range(5):
            sqs.send_message(QueueUrl=url, MessageBody=str(i))
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        [taken] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"],
                attributes["ApproximateNumberOfMessagesDelayed"]) == ("4", "1", "1")
        rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(m["Body"] for m in rest) == sorted({"0", "1", "2", "3", "4"} - {taken["Body"]})


@pytest.mark.own_adapters
def test_a_json_template_is_read_as_json_and_yaml_still_as_moto_reads_it() -> None:
    from moto.cloudformation.models import Stack

    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "yes"}}},
                "Outputs": {"U": {"Value": {"Fn::GetAtt": ["Q", "Arn"]}}}}
    yaml_body = "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties: {QueueName: !Ref Name}\n"
    as_moto, yaml_as_moto = Stack.parse_template(json.dumps(template)), Stack.parse_template(yaml_body)
    with moto_adapters.adapted():
        assert Stack.parse_template(json.dumps(template)) == as_moto == template
        assert Stack.parse_template(yaml_body) == yaml_as_moto
        with mocked_aws():  # a whole deploy through the patched parser
            cfn = boto3.client("cloudformation", region_name="us-east-1")
            cfn.create_stack(StackName="json", TemplateBody=json.dumps({"Resources": template["Resources"]}))
            assert boto3.client("sqs", region_name="us-east-1").get_queue_url(QueueName="yes")["QueueUrl"]


def test_eventbridge_target_paths_are_parsed_once() -> None:
    import jsonpath_ng.ext

    assert jsonpath_ng.ext.parse("$.detail") is jsonpath_ng.ext.parse("$.detail")


def test_executions_read_in_process_are_what_the_api_reports() -> None:
    with mocked_aws():
        arn = _machine({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": 1}, "End": True}}})
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        execution = sfn.start_execution(stateMachineArn=arn, input='{"a": 1}')["executionArn"]
        api = _wait(execution)
        assert moto_adapters.execution_statuses(arn) == {execution: "SUCCEEDED"}
        described, history = moto_adapters.read_execution(execution)
        assert described["status"] == api["status"]
        for key in ("input", "output"):
            assert json.loads(described[key]) == json.loads(api[key])
        api_history = sfn.get_execution_history(executionArn=execution)["events"]
        assert [e["type"] for e in history] == [e["type"] for e in api_history]


# --- AWS limits the local stack enforces over moto ----------------------------------------------------

def test_a_task_input_over_256_kib_fails_the_execution_past_its_catch() -> None:
    with mocked_aws():
        url = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="big")["QueueUrl"]
        arn = _machine({"StartAt": "Send", "States": {
            "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                     "Parameters": {"QueueUrl": url, "MessageBody": {"a.$": "$.half", "b.$": "$.half"}},
                     "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": True},
            "Caught": {"Type": "Succeed"}}})
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        small = sfn.start_execution(stateMachineArn=arn, name="small",
                                    input=json.dumps({"half": "x" * 100_000}))["executionArn"]
        assert _wait(small)["status"] == "SUCCEEDED"  # 200 KB of parameters: within the quota
        big = sfn.start_execution(stateMachineArn=arn, name="big",
                                  input=json.dumps({"half": "x" * 140_000}))["executionArn"]
        done = _wait(big)
        assert (done["status"], done["error"]) == ("FAILED", "States.DataLimitExceeded")  # not caught


def test_restart_runs_an_execution_again_under_its_arn() -> None:
    with mocked_aws():
        arn = _machine({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        execution = sfn.start_execution(stateMachineArn=arn, name="once", input='{"a": 1}')["executionArn"]
        _wait(execution)
        moto_adapters.restart_execution(execution)
        again = _wait(execution)
        assert (again["status"], json.loads(again["input"])) == ("SUCCEEDED", {"a": 1})
        assert moto_adapters.execution_statuses(arn) == {execution: "SUCCEEDED"}


def test_put_events_refuses_an_entry_over_256_kib_and_sends_the_others() -> None:
    with mocked_aws():
        events = boto3.client("events", region_name="us-east-1")
        detail = json.dumps({"p": "x" * (256 * 1024 - 10)})  # with "s" and "d": 2 bytes over
        answer = events.put_events(Entries=[{"Source": "s", "DetailType": "d", "Detail": '{"ok": 1}'},
                                            {"Source": "s", "DetailType": "d", "Detail": detail}])
        assert answer["FailedEntryCount"] == 1
        assert answer["Entries"][0]["EventId"] and answer["Entries"][1]["ErrorCode"] == "ValidationException"


def test_sqs_messages_are_held_to_the_queue_size_in_bytes() -> None:
    with mocked_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        default = sqs.create_queue(QueueName="default")["QueueUrl"]
        large = sqs.create_queue(QueueName="large", Attributes={"MaximumMessageSize": "1048576"})["QueueUrl"]
        assert sqs.get_queue_attributes(QueueUrl=default, AttributeNames=["MaximumMessageSize"])[
            "Attributes"]["MaximumMessageSize"] == "262144"
        body = "é" * 140_000  # 140,000 characters, 280,000 bytes
        with pytest.raises(ClientError, match="shorter than 262144 bytes"):
            sqs.send_message(QueueUrl=default, MessageBody=body)
        sqs.send_message(QueueUrl=large, MessageBody=body)


def test_dynamodb_holds_keys_and_items_to_their_limits() -> None:
    """moto enforces these itself: no adapter, but the workflow depends on them."""
    with mocked_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        with pytest.raises(ClientError, match="ValidationException"):
            ddb.update_item(TableName="t", Key={"k": {"S": "k" * 2049}}, UpdateExpression="SET a = :a",
                            ExpressionAttributeValues={":a": {"S": "x"}})
        with pytest.raises(ClientError, match="ValidationException"):
            ddb.update_item(TableName="t", Key={"k": {"S": "k"}}, UpdateExpression="SET a = :a",
                            ExpressionAttributeValues={":a": {"S": "x" * 410_000}})


@pytest.mark.own_adapters
def test_another_moto_version_is_refused_with_what_to_do() -> None:
    moto_adapters.check_moto_version()  # the pinned one, installed by make setup
    with pytest.raises(moto_adapters.MotoVersionError,
                       match=r"written for moto 5\.2\.5, and moto 5\.3\.0 is installed"):
        moto_adapters.check_moto_version("5.3.0")


def test_a_failing_async_target_is_tried_three_times_then_recorded() -> None:
    calls: list[int] = []

    def failing(event: dict) -> None:  # type: ignore[type-arg]
        calls.append(1)
        raise RuntimeError("down")

    fn = HandlerFunction(handler=failing)
    before = len(moto_adapters.ASYNC_FAILURES)
    moto_adapters._invoke_async(fn, {"detail": {}})
    assert len(calls) == moto_adapters.ASYNC_ATTEMPTS == 3
    failure = moto_adapters.ASYNC_FAILURES.pop()
    assert len(moto_adapters.ASYNC_FAILURES) == before
    assert (failure.function, failure.error) == ("f", "RuntimeError: down")



def _logged_machine(definition: dict, level: str) -> tuple[str, str]:  # type: ignore[type-arg]
    """A CloudFormation EXPRESS machine logging to a group of its own, as template.yaml declares it."""
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    group = f"/aws/vendedlogs/states/g{time.monotonic_ns()}"
    template = {"Resources": {
        "Role": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": group}},
        "M": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {
            "StateMachineType": "EXPRESS", "DefinitionString": json.dumps(definition),
            "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
            "LoggingConfiguration": {"Level": level, "IncludeExecutionData": False, "Destinations": [
                {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Fn::GetAtt": ["Logs", "Arn"]}}}]}}}},
        "Outputs": {"Arn": {"Value": {"Ref": "M"}}}}
    name = f"s{time.monotonic_ns()}"
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    return cfn.describe_stacks(StackName=name)["Stacks"][0]["Outputs"][0]["OutputValue"], group


def _execution_log(group: str, arn: str, expect_lines: bool = True) -> list[dict]:  # type: ignore[type-arg]
    """The execution's log events; awaited, as the log is written just after the execution ends."""
    logs = boto3.client("logs", region_name="us-east-1")
    for _ in range(400):
        found = logs.filter_log_events(logGroupName=group, filterPattern=f'"{arn}"')["events"]
        if found or not expect_lines:
            break
        time.sleep(0.005)
    return [json.loads(e["message"]) for e in found]


def test_an_execution_logs_its_states_by_level_without_its_data() -> None:
    passing = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"secret": 1}, "Next": "B"},
                                          "B": {"Type": "Pass", "End": True}}}
    failing = {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "why"}}}
    with mocked_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        runs = {}
        for key, definition, level in (("all", passing, "ALL"), ("error-ok", passing, "ERROR"),
                                       ("error-fail", failing, "ERROR"), ("off", failing, "OFF")):
            machine, group = _logged_machine(definition, level)
            arn = sfn.start_execution(stateMachineArn=machine, name=key,
                                      input=json.dumps({"prompt": "hidden"}))["executionArn"]
            _wait(arn)
            # Nothing to await for a level that writes nothing: the runs before it have shown their logs.
            runs[key] = _execution_log(group, arn, expect_lines=key in ("all", "error-fail"))
    entered = [e["details"]["name"] for e in runs["all"] if e["type"] == "PassStateEntered"]
    assert entered == ["A", "B"]
    assert all(e["execution_arn"] and e["event_timestamp"].isdigit() for e in runs["all"])
    assert "hidden" not in json.dumps(runs["all"]) and "secret" not in json.dumps(runs["all"])
    assert runs["error-ok"] == [] and runs["off"] == []
    assert [e["type"] for e in runs["error-fail"]] == ["ExecutionFailed"]
