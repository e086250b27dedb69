"""The router in two regions (docs/RELIABILITY.md, "The router in two regions"): the stack deployed in
us-east-1 and us-west-2 of one moto with the two-region parameters, sharing the Jobs global table as MRSC
shares it (one copy, strongly consistent from both regions: `share_global_table_replicas`). EventBridge's
global endpoint with replication puts every submission on both regions' buses, so both routers race for
every job: each job must still route exactly once. Without the shared table (two tables, as MREC's
replicas are for the replication lag) every job routes twice: the design needs MRSC."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from routing_manager.events import SubmittedEvent
from routing_manager.local import runner
from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack, execution_arns, wait_for_executions
from tests.reliability.checker import QUEUE_OUTPUTS, Report, check
from tests.support import job

PRIMARY, SECONDARY, WITNESS = "us-east-1", "us-west-2", "us-east-2"
JOBS = 20
# Jobs the frontend also published again after a failover: a third delivery, to the secondary.
REPUBLISHED = 5


def _deploy_in_both(parameters: dict[str, str]) -> list[LocalStack]:
    """The stack in each region, with the same parameters and bus name, as a two-region deployment is."""
    suffix = uuid.uuid4().hex[:8]
    bus = f"routing-{suffix}"
    stacks = []
    for region in (PRIMARY, SECONDARY):
        boto3.client("events", region_name=region).create_event_bus(Name=bus)
        stacks.append(local_stack.deploy(parameters={"Stage": f"t{suffix}", "EventBusName": bus, **parameters},
                                         stack_name=f"{local_stack.STACK_NAME}-{suffix}", region=region))
    return stacks


@pytest.fixture(scope="module")
def two_regions(aws: None) -> Iterator[list[LocalStack]]:
    stacks = _deploy_in_both({"PrimaryRegion": PRIMARY, "SecondaryRegion": SECONDARY, "WitnessRegion": WITNESS,
                              "JobsTableName": f"Jobs-global-{uuid.uuid4().hex[:8]}"})
    yield stacks
    for deployed in stacks:
        local_stack.release(deployed)


def _jobs(count: int) -> list[dict[str, Any]]:
    return [job(provider="replicate" if i % 5 == 0 else "auto") for i in range(count)]


def _deliver_to_both(stacks: list[LocalStack], details: list[dict[str, Any]],
                     again_to_secondary: tuple[dict[str, Any], ...] = ()) -> dict[str, list[runner.JobResult]]:
    """Each job on both buses at once, as the global endpoint's replication delivers it, then every
    execution awaited; the results by region."""
    before = {s.region: execution_arns(s) for s in stacks}
    start = threading.Barrier(len(stacks))

    def publish(deployed: LocalStack) -> None:
        events = deployed.client("events")
        extra = list(again_to_secondary) if deployed.region == SECONDARY else []
        start.wait()
        for detail in [*details, *extra]:  # one entry a call: the two regions' executions interleave
            entry = SubmittedEvent("frontend.api", "video.job.submitted", detail, "two-regions").entry(
                deployed.outputs["EventBusName"])
            assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0

    with ThreadPoolExecutor(len(stacks)) as pool:
        list(pool.map(publish, stacks))
    results = {}
    for deployed in stacks:
        expected = len(details) + (len(again_to_secondary) if deployed.region == SECONDARY else 0)
        executions = wait_for_executions(deployed, expected, timeout=180, already=before[deployed.region])
        results[deployed.region] = [runner.summarise(e) for e in executions]
    return results


def _seen_by_both(stacks: list[LocalStack], submitted: set[str]) -> Report:
    """What a user sees across both regions: every provider queue's messages and every outcome event of
    either region, and the Jobs records (the same table, read from each region)."""
    reports = [check(deployed, submitted) for deployed in stacks]
    merged = Report(submitted=set(submitted), records=reports[0].records)
    for report in reports:
        merged.messages.update(report.messages)
        merged.events.update(report.events)
    return merged


def test_a_job_delivered_to_both_regions_routes_exactly_once(two_regions: list[LocalStack]) -> None:
    details = _jobs(JOBS)
    results = _deliver_to_both(two_regions, details, again_to_secondary=tuple(details[:REPUBLISHED]))
    every = [r for region_results in results.values() for r in region_results]

    assert len(every) == 2 * JOBS + REPUBLISHED
    unexpected = [(r.jobId, r.status, r.reason) for r in every if r.status not in ("ROUTED", "DUPLICATE")]
    assert not unexpected, unexpected
    winners = Counter(r.jobId for r in every if r.status == "ROUTED")
    assert winners == Counter({d["jobId"]: 1 for d in details}), winners
    # The router that lost the claim enqueued, marked and announced nothing.
    for duplicate in (r for r in every if r.status == "DUPLICATE"):
        assert duplicate.path[-1] == "AlreadyHandled" and "EnqueueJob" not in duplicate.path, duplicate.path

    submitted = {d["jobId"] for d in details}
    report = _seen_by_both(two_regions, submitted)
    wins = {region: sum(r.status == "ROUTED" for r in region_results) for region, region_results in results.items()}
    print(f"two regions: {report.summary()}; routed by region {wins}")
    assert report.ok(), (report.lost, report.duplicated, report.unexpected)
    assert report.records == {job_id: "ROUTED" for job_id in submitted}
    assert sum(report.messages.values()) == sum(report.events.values()) == JOBS
    routed_events = [e for deployed in two_regions for e in deployed.outcome_events()
                     if e["detail"].get("jobId") in submitted]
    assert Counter(e["detail-type"] for e in routed_events) == {"video.job.routed": JOBS}
    # One table: the secondary reads each record as the primary wrote it, and the other way round.
    assert check(two_regions[1], submitted).records == report.records
    for detail in details:
        claimed_by = two_regions[0].record(detail["jobId"])["claimedBy"]  # type: ignore[index]
        assert claimed_by == next(r.executionArn for r in every if r.jobId == detail["jobId"] and r.status == "ROUTED")


def test_without_one_strongly_consistent_table_every_job_routes_twice(aws: None) -> None:
    """Each region with a table of its own: what MREC's replicas are until replication catches up, and
    with event replication both routers claim every job at once. The claim holds in each region, so
    the job is routed in both: two messages, two routed events, a record in each table."""
    stacks = [local_stack.deploy_unique(region=region) for region in (PRIMARY, SECONDARY)]
    try:
        assert not any("GlobalEndpointId" in deployed.outputs for deployed in stacks)  # a default deploy: one region
        details = _jobs(JOBS // 2)
        results = _deliver_to_both(stacks, details)
        submitted = {d["jobId"] for d in details}
        for region_results in results.values():
            assert Counter(r.status for r in region_results) == {"ROUTED": len(details)}
        messages: Counter[str] = Counter()
        for deployed in stacks:
            for key in QUEUE_OUTPUTS:
                messages.update(m["MessageAttributes"]["jobId"]["StringValue"] for m in deployed.messages(
                    deployed.outputs[key]))
            assert check(deployed, submitted).records == {job_id: "ROUTED" for job_id in submitted}
        assert messages == Counter({job_id: 2 for job_id in submitted})
    finally:
        for deployed in stacks:
            local_stack.release(deployed)
