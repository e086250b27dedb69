"""An execution killed between its side effects, then replay: nothing lost; at most one message
per job except in the window between EnqueueJob and MarkRouted, measured here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from moto.dynamodb.models import DynamoDBBackend
from moto.events.models import EventsBackend
from moto.sqs.models import SQSBackend
from typer.testing import CliRunner

from routing_manager.cli import app
from routing_manager.local import moto_adapters
from routing_manager.local.stack import LocalStack, execution_arns, wait_for_executions
from tests.reliability.faults import Fault, inject
from tests.support import events_for, job, messages_for, submit

# The crashes kill execution threads on purpose; pytest would report each as a warning.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


class Crash(BaseException):
    """Not an Exception: neither moto nor the interpreter catches it, so the execution's thread
    dies where it stands, as when an EXPRESS execution is killed: side effects so far remain."""


def crash_then_replay(stack: LocalStack, monkeypatch: pytest.MonkeyPatch,
                      arm: Callable[[str], Fault]) -> tuple[dict, Any]:  # type: ignore[type-arg]
    detail = job()
    fault = arm(detail["jobId"])
    [crashed] = submit(stack, detail, timeout=3)
    assert crashed.status == "STUCK"  # reported, not waited on forever
    # On a loaded machine the execution may not have reached the crash in those 3 s: removing the fault
    # first would let it go on and send as well as the replay.
    assert fault.fired.wait(60), "the execution never reached the injected crash"
    moto_adapters.kill_execution(crashed.executionArn)  # dead, as on AWS: not timed out and retried
    monkeypatch.undo()  # the fault is gone; the service is back
    monkeypatch.setattr("routing_manager.cli._aws_client", lambda service, *a: stack.client(service))
    before = execution_arns(stack)
    result = CliRunner().invoke(app, ["replay", "--stack", stack.name, "--yes", "--stale-after", "0s", "--force",
                                      "--job-id", detail["jobId"], "--json"])
    assert result.exit_code == 0, result.output
    if "replayed" in result.stdout:
        wait_for_executions(stack, 1, already=before)
    return detail, result


def test_crash_after_claim(fresh_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    def arm(job_id: str) -> Fault:  # killed as it enqueues: claimed, nothing sent
        fault = Fault(lambda call: job_id in call, [Crash()])
        return inject(monkeypatch, SQSBackend, "send_message", fault).__enter__()

    detail, replay = crash_then_replay(fresh_stack, monkeypatch, arm)
    assert '"source": "stale-claim"' in replay.stdout
    assert fresh_stack.record(detail["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1
    assert [e["detail-type"] for e in events_for(fresh_stack, detail["jobId"])] == ["video.job.routed"]


def test_crash_after_enqueue_is_the_one_duplicate_window(fresh_stack: LocalStack,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def arm(job_id: str) -> Fault:
        fault = Fault(lambda call: ":routed" in call and job_id in call, [Crash()])
        return inject(monkeypatch, DynamoDBBackend, "update_item", fault).__enter__()

    detail, _ = crash_then_replay(fresh_stack, monkeypatch, arm)
    assert fresh_stack.record(detail["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    # Enqueued, then killed before MarkRouted: replay cannot know, and enqueues again.
    # Consumers dedupe by the jobId message attribute (docs/RELIABILITY.md).
    messages = messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])
    assert len(messages) == 2
    assert {m["MessageAttributes"]["jobId"]["StringValue"] for m in messages} == {detail["jobId"]}


def test_crash_after_mark_loses_nothing_and_replays_nothing(fresh_stack: LocalStack,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def arm(job_id: str) -> Fault:
        fault = Fault(lambda call: "video.job.routed" in call and job_id in call, [Crash()])
        return inject(monkeypatch, EventsBackend, "put_events", fault).__enter__()

    detail, replay = crash_then_replay(fresh_stack, monkeypatch, arm)
    assert replay.stdout.strip() == ""  # ROUTED is final: nothing to replay
    assert fresh_stack.record(detail["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1
    assert events_for(fresh_stack, detail["jobId"]) == []  # the announcement died with it: the record is the truth
