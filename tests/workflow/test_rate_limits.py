"""Rate limits held across rules environments (issue 25): concurrent decisions through the local stack's
workflow and rules function, each admission one conditional ADD on the control table's per-minute counter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack
from tests.support import deploy_with_table, events_for, job, submit
from tests.workflow.test_provider_stats import eventually, outcome

JOBS = 25


def admitted(stack: LocalStack, scope: str) -> list[int]:
    """Each UTC minute's count of `scope` (provider, or provider#model) admitted, as the counters hold it. A
    burst may cross a minute's edge and so take two minutes' slots: the tests assert per minute, never sleep."""
    items = stack.client("dynamodb").query(
        TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :scope)",
        ExpressionAttributeValues={":pk": {"S": "rate"}, ":scope": {"S": f"{scope}#"}})["Items"]
    return [int(item["admitted"]["N"]) for item in items
            if item["sk"]["S"].removeprefix(f"{scope}#").isdigit()]


def rules_environments(stack: LocalStack) -> int:
    [function] = [f for f in stack.functions.values() if "Rules" in f.name]
    return int(function.environments)


@pytest.fixture
def fal_five_a_minute(aws: None, tmp_path: Path) -> Iterator[LocalStack]:
    def change(table: dict[str, Any]) -> None:
        table["providers"]["fal"]["rateLimits"] = {"maxJobsPerMinute": 5}
    deployed = deploy_with_table(tmp_path, change)
    yield deployed
    local_stack.release(deployed)


@pytest.fixture
def both_limited(aws: None, tmp_path: Path) -> Iterator[LocalStack]:
    def change(table: dict[str, Any]) -> None:
        table["providers"]["fal"]["rateLimits"] = {"maxJobsPerMinute": 3}
        table["providers"]["replicate"]["modelRateLimits"] = {"minimax/video-01": {"maxJobsPerMinute": 2}}
    deployed = deploy_with_table(tmp_path, change)
    yield deployed
    local_stack.release(deployed)


def test_25_concurrent_jobs_admit_exactly_5_to_fal_and_the_rest_take_the_next_candidate(
        fal_five_a_minute: LocalStack) -> None:
    results = submit(fal_five_a_minute, *(job() for _ in range(JOBS)), timeout=120)
    assert rules_environments(fal_five_a_minute) > 1  # the decisions really were made side by side
    per_minute = admitted(fal_five_a_minute, "fal")
    # 25 jobs span at most two minutes, so one of them saw >= 13 jobs compete for its 5 slots.
    assert max(per_minute) == 5 and all(n <= 5 for n in per_minute), per_minute
    routed_to_fal = sum(per_minute)
    assert Counter((r.status, r.provider) for r in results) == {
        ("ROUTED", "fal"): routed_to_fal, ("ROUTED", "replicate"): JOBS - routed_to_fal}


def test_when_every_candidate_is_full_the_job_is_rate_limited_retryable_and_failed_for_replay(
        both_limited: LocalStack) -> None:
    results = submit(both_limited, *(job() for _ in range(JOBS)), timeout=120)
    fal, minimax = admitted(both_limited, "fal"), admitted(both_limited, "replicate#minimax/video-01")
    assert max(fal) == 3 and all(n <= 3 for n in fal) and max(minimax) == 2 and all(n <= 2 for n in minimax)
    assert Counter((r.status, r.provider or r.reason) for r in results) == {
        ("ROUTED", "fal"): sum(fal), ("ROUTED", "replicate"): sum(minimax),
        ("UNAVAILABLE", "rate_limited"): JOBS - sum(fal) - sum(minimax)}
    held = next(r for r in results if r.status == "UNAVAILABLE")
    record = both_limited.record(held.jobId)
    assert record is not None and (record["status"], record["failureReason"]) == ("FAILED", "rate_limited")
    [event] = events_for(both_limited, held.jobId)
    assert (event["detail-type"], event["detail"]["reason"], event["detail"]["retryable"]) == (
        "video.job.rejected", "rate_limited", True)


def leased(stack: LocalStack, scope: str) -> set[str]:
    """The jobs holding an in-flight lease of `scope` (rateLimits.maxInFlight), as the control table holds them."""
    item = stack.client("dynamodb").get_item(
        TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
        Key={"pk": {"S": "rate"}, "sk": {"S": f"flight#{scope}"}}).get("Item")
    return set(item["leases"]["M"]) if item else set()


@pytest.fixture
def in_flight_limited(aws: None, tmp_path: Path) -> Iterator[LocalStack]:
    def change(table: dict[str, Any]) -> None:
        table["providers"]["fal"]["rateLimits"] = {"maxInFlight": 4}
        table["providers"]["replicate"]["modelRateLimits"] = {"minimax/video-01": {"maxInFlight": 3}}
    deployed = deploy_with_table(tmp_path, change)
    yield deployed
    local_stack.release(deployed)


def test_25_concurrent_jobs_never_exceed_max_in_flight_and_an_outcome_frees_a_slot(
        in_flight_limited: LocalStack) -> None:
    stack = in_flight_limited
    results = submit(stack, *(job() for _ in range(JOBS)), timeout=120)
    assert rules_environments(stack) > 1  # the decisions really were made side by side
    routed = Counter((r.status, r.provider or r.reason) for r in results)
    # Nothing finishes during the burst, so exactly the limits are routed: 4 to fal, 3 to replicate's model.
    assert routed == {("ROUTED", "fal"): 4, ("ROUTED", "replicate"): 3, ("UNAVAILABLE", "rate_limited"): JOBS - 7}
    fal_jobs = {r.jobId for r in results if r.provider == "fal"}
    assert leased(stack, "fal") == fal_jobs and len(leased(stack, "replicate#minimax/video-01")) == 3
    held = next(r for r in results if r.status == "UNAVAILABLE")
    record = stack.record(held.jobId)
    assert record is not None and (record["status"], record["failureReason"]) == ("FAILED", "rate_limited")
    [event] = events_for(stack, held.jobId)
    assert (event["detail-type"], event["detail"]["retryable"]) == ("video.job.rejected", True)
    # One fal job completes, one fails: their outcomes through the provider events function free two slots.
    done, failed = sorted(fal_jobs)[:2]
    outcome(stack, "completed", jobId=done, durationSec=30.0)
    outcome(stack, "failed", jobId=failed, errorType="provider_error")
    eventually(lambda: leased(stack, "fal") == fal_jobs - {done, failed}, "the outcomes to end two leases")
    again = submit(stack, *(job() for _ in range(5)), timeout=120)
    assert Counter((r.status, r.provider or r.reason) for r in again) == {
        ("ROUTED", "fal"): 2, ("UNAVAILABLE", "rate_limited"): 3}
