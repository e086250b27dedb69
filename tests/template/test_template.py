"""template.yaml: translates, lints clean, and wires the ASL the way it needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from routing_manager import project
from routing_manager.local.stack import translate

SAM_BIN = project.ROOT / ".venv-tools" / "sam" / "bin"
TOOLS_REASON = "linters live in .venv-tools (run `make setup`); `make test` always installs them"


def _with_suppressions(sam: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """A SAM resource's cfn-lint suppressions (each justified in template.yaml) also cover the
    resources SAM generates from it (its role, rule, permission), which SAM's translator does not copy."""
    for logical, resource in sam["Resources"].items():
        metadata = resource.get("Metadata", {}).get("cfn-lint")
        if not metadata:
            continue
        for generated, child in template["Resources"].items():
            if generated.startswith(logical) and generated != logical:
                child.setdefault("Metadata", {}).setdefault("cfn-lint", metadata)
    return template


@pytest.fixture(scope="module")
def packaged(sam: dict[str, Any]) -> dict[str, Any]:
    """What `sam package && sam deploy` hands CloudFormation."""
    return _with_suppressions(sam, translate(packaged=True))


MACHINES = {"RoutingStateMachine": (project.ASL, "video.job.submitted"),
            "BatchRoutingStateMachine": (project.BATCH_ASL, "video.job.batch.submitted")}


@pytest.fixture(scope="module")
def inlined(sam: dict[str, Any]) -> dict[str, Any]:
    """The state machines' Definitions as objects: cfn-lint then checks the ASL against its schema."""
    template = _with_suppressions(sam, translate())
    for logical, (asl, _) in MACHINES.items():
        machine = template["Resources"][logical]
        del machine["Properties"]["DefinitionString"]  # how SAM inlines it: text cfn-lint does not parse
        machine["Properties"]["Definition"] = json.loads(asl.read_text())
    return template


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_both_state_machines_are_express_with_logging_without_execution_data(sam: dict[str, Any]) -> None:
    machines = resources(sam, "AWS::Serverless::StateMachine")
    assert set(machines) == set(MACHINES)
    for machine in machines.values():
        props = machine["Properties"]
        assert props["Type"] == "EXPRESS"
        assert props["Logging"]["IncludeExecutionData"] is False
        assert props["Tracing"] == {"Enabled": {"Fn::If": ["TracesActively", True, False]}}
    props = machines["RoutingStateMachine"]["Properties"]
    assert props["Type"] == "EXPRESS"
    assert props["Logging"]["IncludeExecutionData"] is False
    # X-Ray follows the Tracing parameter, the functions' too: PassThrough by default (docs/COST.md).
    assert props["Tracing"] == {"Enabled": {"Fn::If": ["TracesActively", True, False]}}
    assert sam["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}
    assert sam["Parameters"]["Tracing"]["Default"] == "PassThrough"


@pytest.mark.parametrize("logical", MACHINES)
def test_every_substitution_used_in_the_asl_is_defined_and_none_is_unused(sam: dict[str, Any], logical: str) -> None:
    machine = sam["Resources"][logical]
    defined = set(machine["Properties"]["DefinitionSubstitutions"])
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", MACHINES[logical][0].read_text()))
    assert used == defined


@pytest.mark.parametrize("logical", MACHINES)
def test_rule_accepts_only_frontend_submissions(sam: dict[str, Any], logical: str) -> None:
    [event] = sam["Resources"][logical]["Properties"]["Events"].values()
    assert event["Type"] == "EventBridgeRule"
    assert event["Properties"]["Pattern"] == {"source": ["frontend.api"], "detail-type": [MACHINES[logical][1]]}
    assert event["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert "DeadLetterConfig" in event["Properties"]


def test_translates_to_cloudformation(translated: dict[str, Any]) -> None:
    kinds = {v["Type"] for v in translated["Resources"].values()}
    assert {"AWS::StepFunctions::StateMachine", "AWS::Lambda::Function", "AWS::Events::Rule",
            "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::IAM::Role"} <= kinds
    machines = resources(translated, "AWS::StepFunctions::StateMachine").values()
    assert [m["Properties"]["StateMachineType"] for m in machines] == ["EXPRESS", "EXPRESS"]
    rules = resources(translated, "AWS::Events::Rule")
    assert rules["HeartbeatFunctionEveryFiveMinutes"]["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert rules["QualityModelFunctionEveryFifteenMinutes"]["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    rule = rules["RoutingStateMachineJobSubmitted"]
    assert rule["Properties"]["EventPattern"]["source"] == ["frontend.api"]
    [target] = rule["Properties"]["Targets"]
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["SubmittedEventsDLQ", "Arn"]}


def test_rules_function_is_arm64_python312_256mb(sam: dict[str, Any]) -> None:
    globals_ = sam["Globals"]["Function"]
    assert (globals_["Runtime"], globals_["Architectures"], globals_["MemorySize"], globals_["Timeout"]) == (
        "python3.12", ["arm64"], 256, 30)


def _every_state(states: dict[str, Any]) -> dict[str, Any]:
    """The states of a definition with those inside its Maps' processors."""
    found = dict(states)
    for state in states.values():
        if state["Type"] == "Map":
            found.update(_every_state(state["ItemProcessor"]["States"]))
    return found


@pytest.mark.parametrize("asl", [project.ASL, project.BATCH_ASL], ids=["single", "batch"])
def test_asl_states_all_have_retry_and_catch_where_they_can_fail(asl: Path) -> None:
    states = _every_state(json.loads(asl.read_text())["States"])
    tasks = {name: s for name, s in states.items() if s["Type"] == "Task"}
    assert tasks
    for name, state in tasks.items():
        assert state.get("Retry"), f"{name} has no Retry"
        assert state.get("Catch"), f"{name} has no Catch"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not (SAM_BIN / "sam").exists(), reason=TOOLS_REASON)
def test_sam_validate_lint_is_clean() -> None:
    result = _run([str(SAM_BIN / "sam"), "validate", "--lint"], project.ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (SAM_BIN / "cfn-lint").exists(), reason=TOOLS_REASON)
def test_cfn_lint_and_serverless_rules_are_clean_on_sam_and_translated(packaged: dict[str, Any],
                                                                       inlined: dict[str, Any],
                                                                       tmp_path: Path) -> None:
    translated, with_definition = tmp_path / "translated.json", tmp_path / "definition-inlined.json"
    translated.write_text(json.dumps(packaged))
    with_definition.write_text(json.dumps(inlined))
    for template in (project.TEMPLATE, translated, with_definition):
        result = _run([str(SAM_BIN / "cfn-lint"), "--append-rules", "cfn_lint_serverless.rules", "--",
                       str(template)], project.ROOT)
        assert result.returncode == 0, f"{template}:\n{result.stdout}{result.stderr}"


def test_alarms_and_dashboard_are_in_the_template(sam: dict[str, Any]) -> None:
    alarms = resources(sam, "AWS::CloudWatch::Alarm")
    names = {a["Properties"]["AlarmName"]["Fn::Sub"].split("-", 1)[1] for a in alarms.values()}
    assert {"no-routing", "high-rejection-rate", "failures", "heartbeat-missing"} <= names
    assert alarms["HeartbeatMissingAlarm"]["Properties"]["TreatMissingData"] == "breaching"
    assert alarms["NoRoutingAlarm"]["Properties"]["TreatMissingData"] == "breaching"
    assert alarms["HighRejectionRateAlarm"]["Properties"]["Threshold"] == 10
    # An hour without a quality model fit: 4 periods of the 15-minute schedule, each with no fit counted.
    stale = alarms["QualityModelStaleAlarm"]["Properties"]
    assert (stale["MetricName"], stale["Period"] * stale["EvaluationPeriods"], stale["Threshold"],
            stale["ComparisonOperator"], stale["TreatMissingData"]) == (
        "QualityModelFits", 3600, 1, "LessThanThreshold", "breaching")
    schedule = sam["Resources"]["QualityModelFunction"]["Properties"]["Events"]["EveryFifteenMinutes"]
    assert schedule["Properties"]["Schedule"] == "rate(15 minutes)"
    assert resources(sam, "AWS::CloudWatch::Dashboard")
