"""The workflow on AWS Step Functions Local with mocked service integrations (MockConfigFile.json):
one test case per workflow path, the same paths the local-stack tests take on moto.

Opt-in: it needs a Docker engine and the amazon/aws-stepfunctions-local image, which CI here lacks.
    SFN_LOCAL=1 .venv/bin/pytest tests/stepfunctions_local      (after: pip install -e ".[sfn-local]")
The consistency tests below run everywhere: they keep the mock file and the expected paths true to
the ASL, so the suite is ready to run wherever Docker is.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing_manager import project

MOCKS = Path(__file__).with_name("MockConfigFile.json")
MACHINE = "RoutingManager"
ENVELOPE = {"version": "0", "id": "e-1", "detail-type": "video.job.submitted", "source": "frontend.api",
            "account": "123456789012", "time": "2025-06-22T00:22:00Z", "region": "us-east-1", "resources": []}
DETAIL = {"jobId": "job-1", "userId": "user-123", "prompt": "A corgi surfing on a beach at sunset", "lengthSec": 8,
          "resolution": "720p", "tier": "standard", "provider": "auto"}

DECIDED = ["CheckJobId", "DecideRoute", "CheckDecision"]
ROUTED = [*DECIDED, "ClaimJob", "RouteOrReject", "EnqueueJob", "MarkRouted", "EmitRouted"]
UNRECORDED = ["EmitUnrecordedRejection", "CountUnrecordedRejection", "RejectedWithoutRecord"]
FAILURE_TAIL = ["RecordFailure", "EmitFailed", "CountFailure", "SendToFailureQueue", "JobFailed"]
# test case -> (the states it enters, in order; how the execution ends; its input's detail)
EXPECTED: dict[str, tuple[list[str], str, dict[str, Any]]] = {
    "Routed": (ROUTED, "SUCCEEDED", DETAIL),
    "Rejected": ([*DECIDED, "ClaimJob", "RouteOrReject", "MarkRejected", "EmitRejected"], "SUCCEEDED", DETAIL),
    "ProviderUnavailable": ([*DECIDED, "ClaimJob", "RouteOrReject", "MarkUnavailable", "EmitUnavailable"],
                            "SUCCEEDED", DETAIL),
    "MissingJobId": (["CheckJobId", "NoteMissingJobId", *UNRECORDED], "SUCCEEDED", {**DETAIL, "jobId": None}),
    "InvalidJobId": ([*DECIDED, *UNRECORDED], "SUCCEEDED", DETAIL),
    "Duplicate": ([*DECIDED, "ClaimJob", "ReleaseBudgetOfDuplicate", "CountDuplicate", "AlreadyHandled"], "SUCCEEDED",
                  DETAIL),
    "RuleThrottledThenRouted": (ROUTED, "SUCCEEDED", DETAIL),
    "RuleFailsForGood": (["CheckJobId", "DecideRoute", "KeepRuleError", "NameRuleError", *FAILURE_TAIL], "FAILED",
                         DETAIL),
    "QueueError": ([*ROUTED[:6], "NameQueueError", "ReleaseBudgetOfFailedEnqueue", *FAILURE_TAIL], "FAILED", DETAIL),
    "MarkError": ([*ROUTED[:7], "NameStateError", *FAILURE_TAIL], "FAILED", DETAIL),
    "EmitError": ([*ROUTED, "RecordEmitFailure", "AnnouncementFailed"], "FAILED", DETAIL),
    "CreditsRead": ([*DECIDED, "ReadCredits", "CheckCreditBalance", "UseCreditBalance", "DecideWithCredits",
                     "CheckDecisionWithCredits", *ROUTED[3:]], "SUCCEEDED", DETAIL),
}


def _asl() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(project.ASL.read_text())
    return result


def _successors(state: dict[str, Any]) -> set[str]:
    nexts = {c["Next"] for c in state.get("Choices", [])} | {c["Next"] for c in state.get("Catch", [])}
    return nexts | {state[k] for k in ("Next", "Default") if k in state}


# --- consistency: runs everywhere ----------------------------------------------------------------

def test_every_test_case_has_an_expected_path_and_mocks_only_real_tasks() -> None:
    mocks = json.loads(MOCKS.read_text())
    cases = mocks["StateMachines"][MACHINE]["TestCases"]
    assert set(cases) == set(EXPECTED)
    states = _asl()["States"]
    for name, mocked in cases.items():
        path = EXPECTED[name][0]
        for state, response in mocked.items():
            assert states[state]["Type"] == "Task", (name, state)
            assert response in mocks["MockedResponses"], (name, response)
        # Every Task the path enters is mocked: Step Functions Local would call AWS otherwise.
        assert {s for s in path if states[s]["Type"] == "Task"} <= set(mocked), name


def test_every_expected_path_is_a_walk_through_the_asl() -> None:
    definition = _asl()
    for name, (path, status, _) in EXPECTED.items():
        assert path[0] == definition["StartAt"], name
        for here, there in zip(path, path[1:], strict=False):
            assert there in _successors(definition["States"][here]), (name, here, there)
        last = definition["States"][path[-1]]
        assert last["Type"] in ("Succeed", "Fail") or last.get("End"), name
        assert (status == "FAILED") == (last["Type"] == "Fail"), name


# --- the suite on Step Functions Local -----------------------------------------------------------

def _skip_reason() -> str | None:
    if os.environ.get("SFN_LOCAL") != "1":
        return "opt-in: set SFN_LOCAL=1 to run on Step Functions Local (needs a Docker engine)"
    try:
        import docker  # noqa: F401  (comes with testcontainers)
        import testcontainers  # noqa: F401
    except ImportError:
        return 'testcontainers is not installed: pip install -e ".[sfn-local]"'
    import docker as docker_sdk

    try:
        docker_sdk.from_env().ping()
    except Exception as exc:  # no engine: the reason is the point
        return f"no Docker engine reachable: {exc}"
    return None


@pytest.fixture(scope="module")
def sfn_local() -> Iterator[Any]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason=reason)
    import boto3
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    container = (DockerContainer("amazon/aws-stepfunctions-local")
                 .with_exposed_ports(8083)
                 .with_volume_mapping(str(MOCKS), "/home/StepFunctionsLocal/MockConfigFile.json", "ro")
                 .with_env("SFN_MOCK_CONFIG", "/home/StepFunctionsLocal/MockConfigFile.json"))
    with container:
        wait_for_logs(container, "Starting server", timeout=120)
        endpoint = f"http://{container.get_container_host_ip()}:{container.get_exposed_port(8083)}"
        yield boto3.client("stepfunctions", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def machine_arn(sfn_local: Any) -> str:
    text = project.ASL.read_text()
    for key, value in {"JobsTableName": "Jobs-local", "CreditsTableName": "Credits-local",
                       "RulesFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:rules",
                       "FailureQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/RoutingFailureQueue",
                       "EventBusName": "default", "RouterSource": "routing.manager",
                       "MetricsNamespace": "VideoJobRouting"}.items():
        text = text.replace(f"${{{key}}}", value)
    arn: str = sfn_local.create_state_machine(name=MACHINE, definition=text, type="STANDARD",
                                              roleArn="arn:aws:iam::123456789012:role/DummyRole")["stateMachineArn"]
    return arn


@pytest.mark.parametrize("case", list(EXPECTED))
def test_path_on_step_functions_local(sfn_local: Any, machine_arn: str, case: str) -> None:
    path, status, detail = EXPECTED[case]
    execution = sfn_local.start_execution(stateMachineArn=f"{machine_arn}#{case}", name=case,
                                          input=json.dumps({**ENVELOPE, "detail": detail}))["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn_local.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{case} still running after 60 s"
        time.sleep(0.2)
    history = sfn_local.get_execution_history(executionArn=execution, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert (entered, described["status"]) == (path, status)
