"""AWS's semantics, enforced by the local stack, on the real workflow: at-least-once restarts, a claim
held elsewhere, and every event EventBridge accepts ending in a record, a replayable message or an
outcome event (routing_manager.aws_limits names the pages)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto.dynamodb.models import DynamoDBBackend
from moto.sqs.models import SQSBackend

from routing_manager import aws_limits
from routing_manager.events import SubmittedEvent
from routing_manager.local import moto_adapters
from routing_manager.local.stack import LocalStack, execution_arns, wait_for_executions
from routing_manager.publish import entry_size
from tests.reliability.faults import Fault, error, inject
from tests.support import body, events_for, job, messages_for, nested, submit

FOREVER = 50


class Crash(BaseException):
    """Kills the execution's thread where it stands (see test_crash_between_side_effects)."""


def test_a_restarted_execution_reclaims_its_own_claim(fresh_stack: LocalStack, monkeypatch: Any) -> None:
    """AWS may run an asynchronous EXPRESS execution again from the beginning, under the same id. The
    restart finds the claim its first run took: it must carry on, not end as a duplicate."""
    detail = job()
    crash = Fault(lambda call: detail["jobId"] in call, [Crash()])
    with inject(monkeypatch, SQSBackend, "send_message", crash):
        [first] = submit(fresh_stack, detail, timeout=3)
    assert first.status == "STUCK" and fresh_stack.record(detail["jobId"])["status"] == "CLAIMED"  # type: ignore[index]

    before = execution_arns(fresh_stack) - {first.executionArn}
    moto_adapters.restart_execution(first.executionArn)
    [restarted] = wait_for_executions(fresh_stack, 1, already=before)
    assert restarted.arn == first.executionArn and restarted.status == "SUCCEEDED"
    record = fresh_stack.record(detail["jobId"])
    assert record is not None and (record["status"], record["claimedBy"]) == ("ROUTED", first.executionArn)
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 1
    assert [e["detail-type"] for e in events_for(fresh_stack, detail["jobId"])] == ["video.job.routed"]


def test_a_restart_after_the_outcome_repeats_it_at_least_once(fresh_stack: LocalStack) -> None:
    """Restarted after it routed the job, the execution routes it again: a second message and event,
    which consumers dedupe by jobId (at-least-once, docs/RELIABILITY.md); never a lost outcome."""
    detail = job()
    [done] = submit(fresh_stack, detail)
    before = execution_arns(fresh_stack) - {done.executionArn}
    moto_adapters.restart_execution(done.executionArn)
    [again] = wait_for_executions(fresh_stack, 1, already=before)
    assert again.status == "SUCCEEDED" and again.path[-1] == "EmitRouted"
    assert fresh_stack.record(detail["jobId"])["status"] == "ROUTED"  # type: ignore[index]
    assert len(messages_for(fresh_stack, "FalJobQueueUrl", detail["jobId"])) == 2


def test_a_failed_claim_on_a_job_held_elsewhere_announces_nothing(fresh_stack: LocalStack, monkeypatch: Any) -> None:
    """Another execution holds the job; this one's claim fails for an operational reason. Recording a
    failure is not this execution's to do: no failure message, no rejected event next to the other's
    routed one."""
    detail = job()
    holder = "arn:aws:states:us-east-1:123456789012:execution:routing:the-other-one"
    fresh_stack.client("dynamodb").put_item(TableName=fresh_stack.outputs["JobsTableName"], Item={
        "jobId": {"S": detail["jobId"]}, "status": {"S": "CLAIMED"}, "claimedBy": {"S": holder}})
    throttled = Fault(lambda call: "claimedAt" in call and detail["jobId"] in call,
                      [error("InternalServerError")] * FOREVER)
    with inject(monkeypatch, DynamoDBBackend, "update_item", throttled):
        [result] = submit(fresh_stack, detail)
    assert result.status == "DUPLICATE", (result.status, result.path)
    assert "RecordFailure" in result.path and "EmitFailed" not in result.path
    assert events_for(fresh_stack, detail["jobId"]) == []
    assert not [m for m in fresh_stack.messages(fresh_stack.outputs["RoutingFailureQueueUrl"])
                if detail["jobId"] in json.dumps(body(m))]
    assert fresh_stack.record(detail["jobId"])["claimedBy"] == holder  # type: ignore[index]


# --- nothing lost, for any event EventBridge accepts -----------------------------------------------

def _sized(detail: dict[str, Any], total: int) -> dict[str, Any]:
    """The detail padded (in `pad`) to `total` bytes as compact JSON."""
    padded = {**detail, "pad": ""}
    padded["pad"] = "x" * max(0, total - len(json.dumps(padded, separators=(",", ":"))))
    return padded


text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e", '"', "\\"]),
               max_size=40)
hostile_details = st.one_of(
    # sizes around every limit: the contract's, EventBridge's, Step Functions' execution input
    st.sampled_from([1_000, 32_700, 32_768, 32_900, 200_000, 261_000, 261_900, 262_000, 262_100]).map(
        lambda n: _sized(job(), n)),
    st.integers(0, 60).map(lambda depth: job(extra=nested(depth))),  # deeper: below, outside hypothesis
    st.builds(lambda job_id, prompt: job(jobId=job_id, prompt=prompt), text, text),
    st.builds(lambda n, unit: job(jobId=unit * n), st.integers(1, 3_000), st.sampled_from(["a", "é", "🦊"])),
    st.dictionaries(st.sampled_from(["jobId", "userId", "prompt", "lengthSec", "provider", "feature"]),
                    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
                    | st.lists(text, max_size=3), max_size=6),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(hostile_details, min_size=1, max_size=4))
def test_every_accepted_event_ends_recorded_announced_or_replayable(stack: LocalStack, details: list[Any]) -> None:
    events = [SubmittedEvent("frontend.api", "video.job.submitted", d, "hostile") for d in details]
    accepted = [e for e in events if entry_size(e.entry(None)) <= aws_limits.EVENTBRIDGE_ENTRY_BYTES]
    from routing_manager.local import runner

    results = runner.publish_and_wait(stack, accepted, timeout=60)
    assert len(results) == len(accepted)
    for result in results:
        # Ended by the workflow's own paths, or dead-lettered (replayable): never crashed, lost or stuck.
        assert result.status in ("ROUTED", "REJECTED", "DUPLICATE", "FAILED", "DEAD_LETTERED"), (
            result.status, result.reason, result.path)
        if result.status == "DEAD_LETTERED":  # only what Step Functions cannot even start
            assert "execution input is over" in (result.reason or "")
        if result.status in ("ROUTED", "REJECTED") and isinstance(result.jobId, str):
            announced = [e for e in stack.outcome_events() if e["detail"].get("jobId") in (result.jobId, None)]
            assert announced, result


def test_nesting_far_past_the_limit_is_rejected_not_crashed(stack: LocalStack) -> None:
    """moto's interpreter walked such inputs recursively and crashed (States.Runtime, no record) past
    about 450 levels; the workflow's gate must see them and reject them (outside hypothesis, which
    lowers the recursion limit while it runs an example)."""
    details = [job(extra=nested(depth)) for depth in (33, 500, 1_500)]
    results = {r.jobId: r for r in submit(stack, *details)}
    for detail in details:
        result = results[detail["jobId"]]
        assert (result.status, result.reason) == ("REJECTED", "job_too_deep"), (result.status, result.reason)
