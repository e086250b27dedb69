"""A second witness: every workflow path run on the local stack (moto's interpreter) is run again on
an independent States Language interpreter (aws-local-stepfunctions, node), each Task answered with
the result or error the local stack recorded for it. Both must take the same states in the same
order, send the same parameters to every Task and end the same way. Where they disagree, AWS's
documentation decides (docs/LOCAL_STACK.md, "Two interpreters").
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend
from moto.events.models import EventsBackend
from moto.sqs.models import SQSBackend
from routing_core.live import MAX_AGE_SEC

from routing_manager import project
from routing_manager.local import moto_adapters, runner
from routing_manager.local import stack as local_stack
from routing_manager.local.lambda_runtime import Result
from routing_manager.local.stack import LocalStack
from tests.reliability.faults import FAILED_ENTRY, Fault, error, inject, patch
from tests.support import (
    budgeted,
    deploy_routing_on_credits,
    deploy_with_table,
    failing_sqs_entries,
    job,
    nested,
    refused_outcome_events,
    submit,
)

REPLAY = project.ROOT / "tools" / "asl" / "differential.js"
INSTALLED = project.ROOT / "tools" / "asl" / "node_modules" / "aws-local-stepfunctions"
FOREVER = 50
# $$.State.EnteredTime differs per state on the local stack; the second interpreter takes one value
# for the whole run. Timestamps are compared as such, not by value.
ENTERED_TIME = "2025-06-22T00:22:00Z"
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the second interpreter runs on it"),
    pytest.mark.skipif(not INSTALLED.exists(), reason="tools/asl/node_modules is missing: run `make setup`"),
]

Case = Callable[[LocalStack, pytest.MonkeyPatch], str]  # runs one path, returns its execution ARN


def _one(stack: LocalStack, detail: Any) -> str:
    [result] = submit(stack, detail)
    return result.executionArn


def _faulted(target: Any, method: str, marker: str, errors: list[Any], detail: dict[str, Any] | None = None) -> Case:
    def run(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
        job_detail = detail or job()
        fault = Fault(lambda call: marker in call and job_detail["jobId"] in call, errors)
        with inject(monkeypatch, target, method, fault):
            return _one(stack, job_detail)
    return run


def _rules_fault(*faults: Any) -> Case:
    def run(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
        stack.rules.faults[:] = list(faults)
        return _one(stack, job())
    return run


def _duplicate(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
    detail = job()
    _one(stack, detail)
    return _one(stack, detail)


def _held_elsewhere(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
    detail = job()
    stack.client("dynamodb").put_item(TableName=stack.outputs["JobsTableName"], Item={
        "jobId": {"S": detail["jobId"]}, "status": {"S": "CLAIMED"}, "claimedBy": {"S": "arn:aws:states:::other"}})
    return _faulted(DynamoDBBackend, "update_item", "claimedAt", [error("InternalServerError")] * FOREVER,
                    detail)(stack, monkeypatch)


def _malformed_decision(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(stack.rules, "intercept", lambda event, invoke: Result(b'{"outcome": "perhaps"}'))
    return _one(stack, job())


def _provider_unavailable(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
    """fal disabled, a job strict to it: recorded FAILED and announced, nothing enqueued."""
    table, key = stack.outputs["ProviderStateTableName"], {"pk": {"S": "state"}, "sk": {"S": "fal"}}
    ddb = stack.client("dynamodb")
    ddb.put_item(TableName=table, Item={**key, "disabledReason": {"S": "differential"}})
    time.sleep(MAX_AGE_SEC)
    try:
        return _one(stack, job(provider="fal"))
    finally:
        ddb.delete_item(TableName=table, Key=key)
        time.sleep(MAX_AGE_SEC)


CASES: dict[str, Case] = {
    "routed": lambda s, m: _one(s, job()),
    "explicit-provider": lambda s, m: _one(s, job(provider="Replicate", lengthSec=60, resolution="1080p")),
    "no-route": lambda s, m: _one(s, job(lengthSec=30, resolution="1080p")),
    "missing-field": lambda s, m: _one(s, job(prompt=...)),
    "invalid-length": lambda s, m: _one(s, job(lengthSec="8")),
    "unsupported-provider": lambda s, m: _one(s, job(provider="runway")),
    "job-too-large": lambda s, m: _one(s, job(prompt="x" * 40_000)),
    "invalid-job-id": lambda s, m: _one(s, job(jobId="x" * 600)),
    "missing-job-id": lambda s, m: _one(s, job(jobId=None)),
    # Deeper than the Lambda runtime's parser goes: Runtime.UnmarshalError, rejected job_too_deep.
    "too-deep-for-the-runtime": lambda s, m: _one(s, job(extra=nested(1_500))),
    "duplicate": _duplicate,
    "rules-throttled-then-routed": _rules_fault("TooManyRequestsException"),
    "rules-failing-for-good": _rules_fault(RuntimeError("rules down")),
    "claim-throttled": _faulted(DynamoDBBackend, "update_item", "claimedAt",
                                [error("ProvisionedThroughputExceededException")]),
    "claim-held-elsewhere": _held_elsewhere,
    "queue-failure": _faulted(SQSBackend, "send_message", "JobQueue",
                              [error("InvalidParameterValue", "sqs")] * FOREVER),
    "mark-failure": _faulted(DynamoDBBackend, "update_item", ":routed", [error("ValidationException")] * FOREVER),
    "emit-failure": _faulted(EventsBackend, "put_events", "video.job.routed", [FAILED_ENTRY] * FOREVER),
    "malformed-decision": _malformed_decision,
    "provider-unavailable": _provider_unavailable,
}
def _batch_of(make_jobs: Callable[[], list[Any]], prepare: Callable[[LocalStack, pytest.MonkeyPatch, list[Any]], Any]
              | None = None) -> Case:
    """A batch case: its jobs made fresh, `prepare` (faults, records) run on them, then the batch."""
    def run(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> str:
        jobs = make_jobs()
        if prepare is not None:
            prepare(stack, monkeypatch, jobs)
        [execution] = runner.publish_batches_and_wait(stack, [{"batchId": f"b-{uuid.uuid4()}", "jobs": jobs}])
        return execution.arn
    return run


def _mixed() -> list[Any]:
    first = job()
    return [first, job(lengthSec=0), job(jobId=...), dict(first), job(provider="Replicate", lengthSec=60,
                                                                      resolution="1080p")]


def _fault(target: Any, method: str, marker: str, errors: list[Any], of_the_job: bool = True) -> Callable[..., None]:
    def prepare(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
        patch(monkeypatch, target, method,
              Fault(lambda call: marker in call and (not of_the_job or jobs[0]["jobId"] in call), errors))
    return prepare


def _claimed_elsewhere(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    stack.client("dynamodb").put_item(TableName=stack.outputs["JobsTableName"], Item={
        "jobId": {"S": jobs[0]["jobId"]}, "status": {"S": "CLAIMED"}, "claimedBy": {"S": "arn:aws:states:::other"}})


def _routed_before(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    _one(stack, jobs[0])


def _rules_down(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    stack.rules.faults[:] = [RuntimeError("rules down")]


def _an_unreadable_plan(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    def intercept(event: Any, invoke: Callable[[Any], Result]) -> Result:
        plan = invoke(event).json()
        plan["jobs"][0]["outcome"] = "perhaps"
        return Result(json.dumps(plan).encode())
    monkeypatch.setattr(stack.rules, "intercept", intercept)


def _fal_disabled(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    table, key = stack.outputs["ProviderStateTableName"], {"pk": {"S": "state"}, "sk": {"S": "fal"}}
    stack.client("dynamodb").put_item(TableName=table, Item={**key, "disabledReason": {"S": "differential"}})
    time.sleep(MAX_AGE_SEC)


def _fal_enabled_again(stack: LocalStack) -> None:
    stack.client("dynamodb").delete_item(TableName=stack.outputs["ProviderStateTableName"],
                                         Key={"pk": {"S": "state"}, "sk": {"S": "fal"}})
    time.sleep(MAX_AGE_SEC)


def _entry(fails: int, events: bool = False) -> Callable[..., None]:
    def prepare(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
        (refused_outcome_events if events else failing_sqs_entries)(monkeypatch, jobs[0]["jobId"], fails)
    return prepare


def _take_over(stack: LocalStack, job_id: str) -> None:
    """Another execution holds the job now: the failure record of this one must find it so."""
    stack.client("dynamodb").update_item(
        TableName=stack.outputs["JobsTableName"], Key={"jobId": {"S": job_id}},
        UpdateExpression="SET claimedBy = :other",
        ExpressionAttributeValues={":other": {"S": "arn:aws:states:::other"}})


def _taken_over_at_the_mark(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    original = DynamoDBBackend.update_item

    def update_item(backend: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if key.get("jobId", {}).get("S") == jobs[0]["jobId"] and ":routed" in repr((args, kwargs)):
            original(backend, table_name, key, "SET claimedBy = :other", {},
                     {":other": {"S": "arn:aws:states:::other"}})
            raise error("ValidationException")
        return original(backend, table_name, key, *args, **kwargs)
    monkeypatch.setattr(DynamoDBBackend, "update_item", update_item)


def _taken_over_at_the_send(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, jobs: list[Any]) -> None:
    def send_message_batch(backend: Any, queue_name: str, entries: dict[str, Any]) -> Any:
        _take_over(stack, jobs[0]["jobId"])
        raise error("InvalidParameterValue", "sqs")
    monkeypatch.setattr(SQSBackend, "send_message_batch", send_message_batch)


BATCH_CASES: dict[str, Case] = {
    "batch-mixed": _batch_of(_mixed),
    "batch-malformed": lambda s, m: runner.publish_batches_and_wait(s, [{"batchId": "b-empty", "jobs": []}])[0].arn,
    "batch-undecided": _batch_of(lambda: [job()], _rules_down),
    "batch-malformed-decision": _batch_of(lambda: [job(), job()], _an_unreadable_plan),
    "batch-claimed-elsewhere": _batch_of(lambda: [job(), job()], _claimed_elsewhere),
    "batch-routed-before": _batch_of(lambda: [job(), job()], _routed_before),
    "batch-claim-failing": _batch_of(lambda: [job()], _fault(DynamoDBBackend, "update_item", "claimedAt",
                                                             [error("ValidationException")] * FOREVER)),
    "batch-mark-failing": _batch_of(lambda: [job()], _fault(DynamoDBBackend, "update_item", ":routed",
                                                            [error("ValidationException")] * FOREVER)),
    "batch-taken-over-at-the-mark": _batch_of(lambda: [job()], _taken_over_at_the_mark),
    "batch-taken-over-at-the-send": _batch_of(lambda: [job()], _taken_over_at_the_send),
    "batch-send-failing": _batch_of(lambda: [job()], _fault(SQSBackend, "send_message_batch", "",
                                                            [error("InvalidParameterValue", "sqs")] * FOREVER)),
    "batch-entry-failing-once": _batch_of(lambda: [job(), job()], _entry(1)),
    "batch-entry-failing": _batch_of(lambda: [job(), job()], _entry(3)),
    "batch-event-refused-once": _batch_of(lambda: [job(), job()], _entry(1, events=True)),
    "batch-event-refused": _batch_of(lambda: [job()], _entry(3, events=True)),
    "batch-events-failing": _batch_of(lambda: [job()], _fault(EventsBackend, "put_events", "video.job.routed",
                                                              [error("InternalException", "events")] * FOREVER)),
    "batch-summary-failing": _batch_of(lambda: [job()], _fault(EventsBackend, "put_events", "video.job.batch.routed",
                                                               [FAILED_ENTRY] * FOREVER, of_the_job=False)),
}
BUDGET_CASES: dict[str, Case] = {  # on a stack whose fal has a daily budget: quotes charged, then given back
    "budget-refunded-for-a-duplicate": _duplicate,
    "budget-refunded-after-a-failed-enqueue": _faulted(SQSBackend, "send_message", "JobQueue",
                                                      [error("InvalidParameterValue", "sqs")] * FOREVER),
    "batch-budget-refunded-for-a-duplicate": _batch_of(lambda: [job(), job()], _routed_before),
    "batch-budget-refunded-for-an-unsent-job": _batch_of(lambda: [job()], _entry(3)),
}
CREDITS_CASES: dict[str, Case] = {
    "credits-present": lambda s, m: _one(s, job(userId="rich-user")),
    "credits-absent": lambda s, m: _one(s, job(userId="nobody")),
}


def record(execution_arn: str) -> dict[str, Any]:
    """What the local stack did: the states entered, each Task's parameters and answers, the end.

    Each history event belongs to the state its previousEventId chain leads back to: a Map's
    iterations run at once and interleave their events."""
    described, history = moto_adapters.read_execution(execution_arn)
    machine = moto_adapters._parser_backend(execution_arn).describe_state_machine(
        moto_adapters._parser_backend(execution_arn).describe_execution(execution_arn).state_machine.arn)
    path: list[str] = []
    parameters: dict[str, list[Any]] = {}
    attempts: dict[str, list[dict[str, Any]]] = {}
    state_of: dict[int, str] = {}
    sent_by: dict[int, Any] = {}  # event id -> the parameters of the task call it belongs to
    for event in history:
        previous = event.get("previousEventId", 0)
        state = state_of.get(previous, "")
        if previous in sent_by:
            sent_by[event["id"]] = sent_by[previous]
        if "stateEnteredEventDetails" in event:
            state = event["stateEnteredEventDetails"]["name"]
            path.append(state)
        elif "taskScheduledEventDetails" in event:
            sent = json.loads(event["taskScheduledEventDetails"]["parameters"])
            sent_by[event["id"]] = sent
            parameters.setdefault(state, []).append(sent)
        elif "taskSucceededEventDetails" in event:
            output = json.loads(event["taskSucceededEventDetails"]["output"])
            attempts.setdefault(state, []).append({"output": output, "input": sent_by.get(event["id"])})
        elif "taskFailedEventDetails" in event:
            details = event["taskFailedEventDetails"]
            attempts.setdefault(state, []).append({"error": details.get("error"), "cause": details.get("cause"),
                                                   "input": sent_by.get(event["id"])})
        state_of[event["id"]] = state
    execution_input = json.loads(described["input"])
    definition = json.loads(machine.definition)
    return {
        "definition": definition, "input": execution_input, "path": path,
        "parameters": parameters, "attempts": attempts, "status": described["status"],
        "output": json.loads(described["output"]) if described.get("output") else None,
        "error": described.get("error"), "cause": described.get("cause"),
        "concurrent": any(st["Type"] == "Map" for st in definition["States"].values()),
        "context": {"Execution": {"Id": execution_arn, "Input": execution_input, "Name": described["name"],
                                  "StartTime": described["startDate"].isoformat()},
                    "StateMachine": {"Id": machine.arn, "Name": machine.name},
                    "State": {"EnteredTime": ENTERED_TIME, "Name": ""}},
    }


def second_interpreter(recordings: dict[str, dict[str, Any]],
                       definitions: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every recording run again on aws-local-stepfunctions, in one node process."""
    cases = [{"name": name, "definition": (definitions or {}).get(name, r["definition"]), "input": r["input"],
              "context": r["context"], "attempts": r["attempts"], "byInput": r["concurrent"]}
             for name, r in recordings.items()]
    result = subprocess.run(["node", str(REPLAY)], input=json.dumps({"cases": cases}), capture_output=True,
                            text=True, timeout=120, cwd=REPLAY.parent)
    assert result.returncode == 0, result.stderr
    replies: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return replies


def _timeless(value: Any) -> Any:
    if isinstance(value, str):
        return TIMESTAMP.sub("<time>", value)
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _in_any_order(calls: list[Any] | None) -> list[str]:
    return sorted(json.dumps(_timeless(call), sort_keys=True) for call in calls or [])


def differences(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """Where the two runs differ. With Map states, iterations run at once, so the states entered are
    compared as counts and each state's calls in any order; without, in order."""
    found = []
    concurrent = recorded["concurrent"]
    same_path = Counter(recorded["path"]) == Counter(replayed["path"]) if concurrent \
        else recorded["path"] == replayed["path"]
    if not same_path:
        found.append(f"path: local stack {recorded['path']}, second interpreter {replayed['path']}")
    same_calls = (lambda a, b: _in_any_order(a) == _in_any_order(b)) if concurrent \
        else (lambda a, b: _timeless(a) == _timeless(b))
    for state, sent in recorded["parameters"].items():
        if not same_calls(sent, replayed["inputs"].get(state)):
            found.append(f"{state} parameters: local stack {sent}, second interpreter {replayed['inputs'].get(state)}")
    if recorded["status"] != replayed["status"]:
        found.append(f"status: local stack {recorded['status']}, second interpreter {replayed['status']}")
    elif recorded["status"] == "SUCCEEDED" and _timeless(recorded["output"]) != _timeless(replayed["output"]):
        found.append(f"output: local stack {recorded['output']}, second interpreter {replayed['output']}")
    elif recorded["status"] == "FAILED" and (recorded["error"], recorded["cause"]) != (
            replayed["error"], replayed["cause"]):
        found.append(f"error: local stack {recorded['error']}/{recorded['cause']}, "
                     f"second interpreter {replayed['error']}/{replayed['cause']}")
    return found


@pytest.fixture(scope="module")
def recordings(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    recorded: dict[str, dict[str, Any]] = {}
    for name, case in {**CASES, **BATCH_CASES}.items():
        with pytest.MonkeyPatch.context() as monkeypatch:
            recorded[name] = record(case(stack, monkeypatch))
    with pytest.MonkeyPatch.context() as monkeypatch:
        try:
            recorded["batch-unavailable"] = record(_batch_of(lambda: [job(provider="fal")], _fal_disabled)(
                stack, monkeypatch))
        finally:
            _fal_enabled_again(stack)
    with pytest.MonkeyPatch.context() as monkeypatch:
        budget_stack = deploy_with_table(tmp_path_factory.mktemp("budget"), budgeted)
        try:
            for name, case in BUDGET_CASES.items():
                recorded[name] = record(case(budget_stack, monkeypatch))
        finally:
            local_stack.release(budget_stack)
    with pytest.MonkeyPatch.context() as monkeypatch:
        credits_stack = deploy_routing_on_credits(tmp_path_factory.mktemp("credits"))
        try:
            for name, case in CREDITS_CASES.items():
                recorded[name] = record(case(credits_stack, monkeypatch))
        finally:
            local_stack.release(credits_stack)
    yield recorded


@pytest.fixture(scope="module")
def replayed(recordings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return second_interpreter(recordings)


@pytest.mark.parametrize("case", [*CASES, *BATCH_CASES, "batch-unavailable", *BUDGET_CASES, *CREDITS_CASES])
def test_both_interpreters_agree(case: str, recordings: dict[str, Any], replayed: dict[str, Any]) -> None:
    assert differences(recordings[case], replayed[case]) == []


def _state_names(states: dict[str, Any]) -> set[str]:
    names = set(states)
    for state in states.values():
        if state["Type"] == "Map":
            names |= _state_names(state["ItemProcessor"]["States"])
    return names


@pytest.mark.parametrize("asl", [project.ASL, project.BATCH_ASL], ids=["single", "batch"])
def test_every_task_state_and_ending_is_covered(recordings: dict[str, Any], asl: Any) -> None:
    """The paths between them enter every state of each workflow, those inside its Maps too."""
    states = _state_names(json.loads(asl.read_text())["States"])
    entered = {state for r in recordings.values() for state in r["path"]}
    assert states - entered == set()


def test_a_changed_choice_is_caught(recordings: dict[str, Any]) -> None:
    """The comparison can fail: swap RouteOrReject's branches in a copy and the routed job diverges."""
    definition = json.loads(json.dumps(recordings["routed"]["definition"]))
    route, reject, _ = definition["States"]["RouteOrReject"]["Choices"]
    route["Next"], reject["Next"] = reject["Next"], route["Next"]
    [found] = [differences(recordings["routed"], replay) for replay in
               second_interpreter({"routed": recordings["routed"]}, {"routed": definition}).values()]
    assert any(line.startswith("path:") for line in found), found
