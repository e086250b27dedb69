"""`publish --batch` against the local stack: EventBridge (with AWS's 256 KiB entry limit, which the
local stack enforces) takes a batch at the size limit; one over it never leaves publish."""

from __future__ import annotations

from typing import Any

from routing_core import batch

from routing_manager.local.stack import LocalStack
from routing_manager.publish import publish_batch_events, publish_batches
from tests.support import job


def _at_size(target: int) -> dict[str, Any]:
    detail = {"batchId": "b-limit", "jobs": [job(prompt="")]}
    detail["jobs"][0]["prompt"] = "x" * (target - batch.entry_bytes(detail))
    return detail


class Counting:
    def __init__(self, stack: LocalStack) -> None:
        self.client, self.entries = stack.client("events"), 0

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.entries += len(Entries)
        return dict(self.client.put_events(Entries=Entries))


def test_a_batch_at_the_size_limit_is_accepted_and_one_over_it_is_refused(stack: LocalStack) -> None:
    client = Counting(stack)
    at, over = _at_size(batch.MAX_ENTRY_BYTES), _at_size(batch.MAX_ENTRY_BYTES + 1)
    accepted, refused = publish_batch_events([at, over], client, event_bus=stack.outputs["EventBusName"])
    assert accepted.ok and accepted.eventId, accepted.error
    assert refused.outcome == "invalid" and "invalid_batch:too_large" in (refused.error or "")
    assert client.entries == 1


def test_publish_batches_packs_large_jobs_into_events_eventbridge_takes(stack: LocalStack) -> None:
    client = Counting(stack)
    jobs = [job(prompt="x" * 30_000) for _ in range(12)]
    results = publish_batches(jobs, client, event_bus=stack.outputs["EventBusName"])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len({r.batchId for r in results}) == 2 and client.entries == 2
