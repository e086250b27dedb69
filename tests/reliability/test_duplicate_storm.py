"""50 distinct jobs, each delivered 10 times at once: exactly one outcome per job."""

from __future__ import annotations

import time

from routing_manager.events import SubmittedEvent
from routing_manager.local import runner
from routing_manager.local.stack import LocalStack, execution_arns, wait_for_executions
from tests.reliability.checker import as_json, check
from tests.support import job

JOBS, DELIVERIES = 50, 10


def test_duplicate_storm_has_exactly_one_outcome_per_job(fresh_stack: LocalStack) -> None:
    jobs = [job(provider="replicate" if i % 5 == 0 else "auto", lengthSec=30 if i % 7 == 0 else 8)
            for i in range(JOBS)]
    before = execution_arns(fresh_stack)
    events = fresh_stack.client("events")
    start = time.monotonic()
    # Round by round, each PutEvents call carries all 10 deliveries of a job: their executions
    # start together and race for the claim, while the other jobs' executions are in flight.
    for detail in jobs:
        entries = [SubmittedEvent("frontend.api", "video.job.submitted", detail, "storm").entry(
            fresh_stack.outputs["EventBusName"]) for _ in range(DELIVERIES)]
        assert events.put_events(Entries=entries)["FailedEntryCount"] == 0
    executions = wait_for_executions(fresh_stack, JOBS * DELIVERIES, timeout=120, already=before)
    elapsed = time.monotonic() - start
    results = [runner.summarise(e) for e in executions]

    assert len(results) == JOBS * DELIVERIES
    failed = [(r.reason, r.path[-9:]) for r in results if r.status not in ("DUPLICATE", "ROUTED", "REJECTED")]
    assert not failed, failed
    statuses = {status: sum(r.status == status for r in results) for status in {r.status for r in results}}
    assert statuses.get("DUPLICATE") == JOBS * (DELIVERIES - 1), statuses
    assert statuses.get("ROUTED", 0) + statuses.get("REJECTED", 0) == JOBS, statuses
    for detail in jobs:
        finals = [r for r in results if r.jobId == detail["jobId"] and r.status != "DUPLICATE"]
        assert len(finals) == 1, detail["jobId"]

    report = check(fresh_stack, {j["jobId"] for j in jobs})
    print(f"storm: {report.summary()} in {elapsed:.1f}s")
    assert report.ok(), as_json(report)
    assert sum(report.messages.values()) == statuses["ROUTED"]
    assert sum(report.events.values()) == JOBS
