"""The circuit breaker fed by provider outcome events, its probe, and a daily budget, through `local up`
over HTTP with a routing table of the operator's own (`local up --routing-table FILE`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.local_up.conftest import LocalUp, job, start_local_up, tuned_table, until


def _quick_breaker_and_budget(table: dict[str, Any]) -> None:
    table["providers"]["fal"]["breaker"] = {"cooldownSec": 5}
    table["providers"]["replicate"]["dailyBudgetUsd"] = 1.0  # one 8 s 720p job at $0.6664


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalUp]:
    table = tuned_table(tmp_path_factory.mktemp("table"), _quick_breaker_and_budget)
    # `explain` decides with the table the operator points it at, as the deployed function does with its own.
    yield from start_local_up("--routing-table", str(table), cli_env={"ROUTING_TABLE_PATH": str(table)})


def outcome(up: LocalUp, kind: str, job_id: str, **fields: Any) -> None:
    detail = {"jobId": job_id, "provider": "fal", "model": "wan-i2v", **fields}
    entry = {"Source": "fal.invoker", "DetailType": f"video.job.{kind}", "Detail": json.dumps(detail)}
    assert up.aws("events", "put-events", "--entries", json.dumps([entry]))["FailedEntryCount"] == 0


def fal_state(up: LocalUp) -> str:
    lines = [json.loads(line) for line in up.cli("provider", "status", "--json").stdout.splitlines()]
    return next(line["state"] for line in lines if (line["provider"], line["model"]) == ("fal", "wan-i2v"))


def breaker_opened(up: LocalUp) -> bool:
    items = up.client("dynamodb").query(
        TableName=up.outputs["ProviderStateTableName"], ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :fal)",
        ExpressionAttributeValues={":pk": {"S": "state"}, ":fal": {"S": "fal"}})["Items"]
    return any("breakerOpenUntil" in item for item in items)


def test_provider_errors_open_the_breaker_and_a_probe_closes_it(tuned: LocalUp) -> None:
    for n in range(6):
        outcome(tuned, "failed", f"broken-{n}", errorType="provider_error")
    # The provider events function counts them as Lambda runs an asynchronous invoke, after put-events
    # returns: await the breaker in the control table (a read, not a CLI process per poll), then ask the CLI.
    until(lambda: breaker_opened(tuned), 60, "six provider errors to open fal's breaker")
    assert fal_state(tuned) in ("open", "half_open")
    # Until the 5 s cool-down ends, strict fal jobs are held; the first job after it is the probe and goes to
    # fal. How many jobs fall inside the cool-down depends on the machine's speed, so the test only asserts
    # what holds at any speed: every job before the probe was held, and one job was the probe.
    held: list[dict[str, Any]] = []

    def probe_or_held() -> dict[str, Any] | None:
        result = tuned.run(job(provider="fal"))
        if result["status"] == "ROUTED":
            return result
        held.append(result)
        return None

    probe = until(probe_or_held, 90, "a probe job to reach fal after the cool-down")
    assert probe["provider"] == "fal"
    assert {r["failureReason"] for r in held} <= {"provider_unavailable:fal"}, held
    # While the probe is in flight (its lease outlives the test) every other strict fal job is held.
    in_flight = tuned.run(job(provider="fal"))
    assert (in_flight["status"], in_flight["failureReason"]) == ("FAILED", "provider_unavailable:fal")
    outcome(tuned, "completed", probe["jobId"], durationSec=40)
    until(lambda: not breaker_opened(tuned), 60, "the probe's success to close the breaker")
    assert fal_state(tuned) == "available"
    # Strict fal jobs: until the rules function's cache (2 s) sees the breaker closed, a job free to spill
    # over would route to replicate and spend the budget the next test counts on.
    until(lambda: tuned.run(job(provider="fal")).get("provider") == "fal", 30, "jobs to go back to fal")


def test_an_exhausted_budget_is_named_in_the_decision(tuned: LocalUp, tmp_path: Path) -> None:
    first = tuned.run(job(provider="replicate"))
    assert (first["status"], first.get("provider")) == ("ROUTED", "replicate"), first
    second = tuned.run(job(provider="replicate"))
    assert (second["status"], second["failureReason"]) == ("FAILED", "provider_unavailable:replicate")
    event = tmp_path / "job.json"
    event.write_text(json.dumps(job(provider="replicate")))
    explained = tuned.cli("explain", "--live", str(event)).stdout
    assert "budget exhausted: $0.6664 of the daily $1 spent" in explained, explained
