"""The template and the ASL read against what AWS documents, where moto would accept anything
(routing_manager.aws_limits names the page behind each limit)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

from routing_manager import aws_limits, project
from routing_manager.local.stack import translate


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(project.ASL.read_text())
    return result


def rule_arn(bus: str, name: str) -> str:
    """A rule's ARN as EventBridge writes it: no bus segment on the default bus."""
    scope = name if bus == "default" else f"{bus}/{name}"
    return f"arn:aws:events:us-east-1:123456789012:rule/{scope}"


def test_rule_dead_letter_policy_names_the_rules_own_arn(translated: dict[str, Any]) -> None:
    [statement] = translated["Resources"]["SubmittedEventsDLQPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    source = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert source == {"Fn::GetAtt": ["RoutingStateMachineJobSubmitted", "Arn"]}
    assert translated["Resources"]["RoutingStateMachineJobSubmitted"]["Type"] == "AWS::Events::Rule"
    # What the old bus-scoped pattern missed: on the default bus the ARN has no bus segment.
    assert not re.fullmatch(r".*:rule/default/.*", rule_arn("default", "routing-job-submitted"))


def test_state_machine_logs_under_vendedlogs(sam: dict[str, Any]) -> None:
    group = sam["Resources"]["RoutingStateMachineLogGroup"]["Properties"]["LogGroupName"]
    assert group["Fn::Sub"].startswith("/aws/vendedlogs/states/")


def test_no_concurrency_is_reserved_unless_asked(sam: dict[str, Any], translated: dict[str, Any]) -> None:
    assert sam["Parameters"]["RulesReservedConcurrency"]["Default"] == 0
    functions = {k: v for k, v in translate()["Resources"].items() if v["Type"] == "AWS::Lambda::Function"}
    for name, function in functions.items():
        reserved = function["Properties"].get("ReservedConcurrentExecutions")
        assert reserved is None or "Fn::If" in reserved, name
    with_reservation = translate(parameters={"RulesReservedConcurrency": "200"})["Resources"]["RulesFunction"]
    assert with_reservation["Properties"]["ReservedConcurrentExecutions"]["Fn::If"][0] == "ReservesRulesConcurrency"


def test_samconfig_deploys_one_stack_per_stage() -> None:
    config = tomllib.loads((project.ROOT / "samconfig.toml").read_text())
    stacks_by_stage: dict[str, set[str]] = {}
    for env in config.values():
        if not isinstance(env, dict):
            continue
        overrides = env.get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        stage = dict(part.split("=", 1) for part in overrides.split()).get("Stage")
        stack = env.get("global", {}).get("parameters", {}).get("stack_name")
        if stage:
            stacks_by_stage.setdefault(stage, set()).add(stack)
    assert stacks_by_stage and all(len(stacks) == 1 for stacks in stacks_by_stage.values()), stacks_by_stage


def test_alarms_cover_every_way_a_job_can_be_lost(sam: dict[str, Any]) -> None:
    alarms = {(a["Properties"].get("Namespace"), a["Properties"].get("MetricName", name)): a["Properties"]
              for name, a in sam["Resources"].items() if a["Type"] == "AWS::CloudWatch::Alarm"}  # math: by name
    for metric in [("AWS/States", "ExecutionsTimedOut"), ("AWS/States", "ExecutionsAborted"),
                   ("AWS/States", "ExecutionsFailed"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
                   ("AWS/Events", "FailedInvocations"), ("AWS/Events", "InvocationsFailedToBeSentToDlq")]:
        assert metric in alarms, metric
    dlq = alarms[("AWS/SQS", "ApproximateNumberOfMessagesVisible")]["Dimensions"]
    assert dlq == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["SubmittedEventsDLQ", "QueueName"]}}]
    # EventBridge reports a default-bus rule under RuleName alone, a custom-bus rule under both.
    condition, default_bus, custom_bus = alarms[("AWS/Events", "FailedInvocations")]["Dimensions"]["Fn::If"]
    assert condition == "OnDefaultBus"
    assert [d["Name"] for d in default_bus] == ["RuleName"]
    assert [d["Name"] for d in custom_bus] == ["EventBusName", "RuleName"]
    runbook = (project.ROOT / "docs" / "RUNBOOK.md").read_text()
    for props in alarms.values():
        name = props["AlarmName"]["Fn::Sub"].split("-", 1)[1]
        assert f"`{name}`" in runbook, f"docs/RUNBOOK.md has no entry for the {name} alarm"


def test_existing_queue_urls_are_checked_and_fifo_refused(sam: dict[str, Any]) -> None:
    for parameter in ("FalQueueUrl", "ReplicateQueueUrl"):
        pattern = re.compile(sam["Parameters"][parameter]["AllowedPattern"])
        assert pattern.fullmatch("")
        assert pattern.fullmatch("https://sqs.eu-west-1.amazonaws.com/123456789012/FalJobQueue")
        for bad in ("https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo", "FalJobQueue",
                    "arn:aws:sqs:eu-west-1:123456789012:FalJobQueue", "https://example.com/123456789012/q",
                    "https://sqs.eu-west-1.amazonaws.com/1234/q"):
            assert not pattern.fullmatch(bad), bad


def _evaluate(expression: Any, parameters: dict[str, str]) -> Any:
    """Ref, Fn::Split and Fn::Select as CloudFormation evaluates them."""
    if isinstance(expression, str):
        return expression
    if "Ref" in expression:
        return parameters[expression["Ref"]]
    if "Fn::Split" in expression:
        separator, value = expression["Fn::Split"]
        return _evaluate(value, parameters).split(separator)
    index, values = expression["Fn::Select"]
    return _evaluate(values, parameters)[index]


def test_existing_queue_arn_takes_region_and_account_from_the_url(translated: dict[str, Any]) -> None:
    url = "https://sqs.eu-west-1.amazonaws.com/210987654321/FalJobQueue"
    role = translated["Resources"]["RoutingStateMachineRole"]
    statement = next(s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
                     if s.get("Sid") == "EnqueueOnProviderQueuesAndFailureQueue")
    template, variables = statement["Resource"][1]["Fn::If"][2]["Fn::Sub"]
    arn = template.replace("${AWS::Partition}", "aws")
    for name, expression in variables.items():
        arn = arn.replace(f"${{{name}}}", _evaluate(expression, {"FalQueueUrl": url}))
    assert arn == "arn:aws:sqs:eu-west-1:210987654321:FalJobQueue"


def test_the_scheduled_functions_get_no_async_retries(translated: dict[str, Any]) -> None:
    configs = [r for r in translated["Resources"].values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert [c["Properties"]["MaximumRetryAttempts"] for c in configs] == [0, 0]
    assert sorted(c["Properties"]["FunctionName"]["Ref"] for c in configs) == ["HeartbeatFunction",
                                                                              "QualityModelFunction"]


def test_every_task_retries_by_its_integrations_policy(asl: dict[str, Any]) -> None:
    tasks = {name: s for name, s in asl["States"].items() if s["Type"] == "Task"}
    for name, state in tasks.items():
        assert state["Retry"] == aws_limits.RETRY_BY_RESOURCE[state["Resource"]], name
        assert state["TimeoutSeconds"] == aws_limits.TIMEOUT_BY_RESOURCE[state["Resource"]], name


def test_the_longest_path_stays_well_inside_the_express_limit(asl: dict[str, Any]) -> None:
    seconds, path = aws_limits.worst_case(asl)
    print(f"worst case {seconds:.0f} s on {' > '.join(path)}")
    assert seconds <= aws_limits.WORKFLOW_BUDGET_SECONDS < aws_limits.EXPRESS_MAX_SECONDS
    assert "ReadCredits" in path and "SendToFailureQueue" in path  # the credits and failure detours counted


def test_no_state_carries_the_event_after_the_gate(asl: dict[str, Any]) -> None:
    """Only the first Task reads the event from the state; every later one reads $$.Execution.Input, so
    the state is the decision and small, whatever EventBridge accepted (tests/reliability proves it)."""
    states = asl["States"]
    readers = {name for name, s in states.items() if '"$.detail' in json.dumps(s)}
    assert readers == {"CheckJobId", "DecideRoute"}
    # No ResultPath is AWS's default "$": the result, or the caught error, replaces the event.
    for name in ("DecideRoute", "DecideWithCredits"):
        assert "ResultPath" not in states[name]
        for catch in states[name]["Catch"]:
            assert "ResultPath" not in catch, f"{name}'s error must replace the event, not join it"


def test_each_provider_has_its_saturation_and_breaker_alarms_with_the_tables_threshold(sam: dict[str, Any]) -> None:
    """The queue-age alarm is backpressure's input: its threshold is the table's maxQueueAgeSec."""
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    alarms = {a["Properties"]["AlarmName"]["Fn::Sub"]: a["Properties"]
              for a in sam["Resources"].values() if a["Type"] == "AWS::CloudWatch::Alarm"}
    for name, provider in table["providers"].items():
        saturated = alarms[f"${{AWS::StackName}}-saturated-{name}"]
        assert (saturated["Namespace"], saturated["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
        assert saturated["Threshold"] == provider["maxQueueAgeSec"], name
        assert saturated["ComparisonOperator"] == "GreaterThanThreshold"
        queue_name = saturated["Dimensions"][0]["Value"]["Fn::If"]
        assert queue_name[1] == {"Fn::GetAtt": [provider["queue"], "QueueName"]}
        breaker = alarms[f"${{AWS::StackName}}-breaker-open-{name}"]
        assert (breaker["MetricName"], breaker["Dimensions"]) == (
            "ProviderBreakerOpen", [{"Name": "provider", "Value": name}])
    prefix = sam["Resources"]["ProviderEventsFunction"]["Properties"]["Environment"]["Variables"][
        "SATURATION_ALARM_PREFIX"]
    assert prefix == {"Fn::Sub": "${AWS::StackName}-saturated-"}
