"""Live statistics per (provider, model) on the local stack: the provider events function counts routed jobs
and outcomes into the control table with atomic ADDs, and `provider stats` reads them back."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from routing_core.stats import BUCKET_SEC
from typer.testing import CliRunner

from routing_manager.cli import app
from routing_manager.local import moto_adapters
from routing_manager.local.stack import LocalStack
from tests.support import job, submit

runner = CliRunner()


def stats(stack: LocalStack, *args: str) -> dict[tuple[str, str], dict[str, Any]]:
    result = runner.invoke(app, ["provider", "stats", "--json", *args, "--stack", stack.name, "--region", "us-east-1"])
    assert result.exit_code == 0, result.output
    return {(line["provider"], line["model"]): line for line in map(json.loads, result.stdout.splitlines())}


def outcome(stack: LocalStack, kind: str, events: Any = None, **detail: Any) -> None:
    detail = {"jobId": f"done-{time.monotonic_ns()}", "provider": "fal", "model": "wan-i2v", **detail}
    result = (events or stack.client("events")).put_events(Entries=[{
        "Source": "fal.invoker", "DetailType": f"video.job.{kind}", "Detail": json.dumps(detail),
        "EventBusName": stack.outputs["EventBusName"]}])
    assert result["FailedEntryCount"] == 0


def eventually(condition: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def clear_of_a_bucket_edge(needed: float = 10.0) -> None:
    """Exact means need every outcome in one 5-minute bucket (weights of two would differ by 6 %): start
    the test in the next bucket when this one ends within `needed` seconds (its three jobs take two)."""
    left = BUCKET_SEC - time.time() % BUCKET_SEC
    if left < needed:
        time.sleep(left + 0.1)


def raw_sums(stack: LocalStack, provider: str, model: str) -> dict[str, float]:
    """The counters as the ADDs left them, summed over every bucket: what a lost update would lower."""
    items = stack.client("dynamodb").query(
        TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "stats"}})["Items"]
    sums: dict[str, float] = {}
    for item in items:
        if item["sk"]["S"].endswith(f"#{provider}#{model}"):
            for name, value in item.items():
                if "N" in value and name != "expiresAt":
                    sums[name] = sums.get(name, 0.0) + float(value["N"])
    return sums


def test_routed_jobs_are_in_flight_until_their_outcomes_which_become_statistics(fresh_stack: LocalStack) -> None:
    stack = fresh_stack
    clear_of_a_bucket_edge()
    before = stats(stack)[("fal", "wan-i2v")]
    assert (before["samples"], before["inFlight"], before["durationEwmaSec"]) == (0, 0, None)

    routed = submit(stack, job(), job(), job())
    assert [r.provider for r in routed] == ["fal"] * 3
    line = eventually(lambda: (s := stats(stack)[("fal", "wan-i2v")])["inFlight"] == 3 and s, "3 jobs in flight")
    assert line["routed"] == 3

    outcome(stack, "completed", jobId=routed[0].jobId, durationSec=40, costUsd=0.64, qualityScore=0.9)
    outcome(stack, "completed", jobId=routed[1].jobId, durationSec=20, costUsd=0.32, qualityScore=0.7)
    outcome(stack, "failed", jobId=routed[2].jobId, errorType="timeout", durationSec=600)
    line = stats(stack)[("fal", "wan-i2v")]
    assert line["samples"] == 3 and line["inFlight"] == 0
    assert line["successRate"] == round(2 / 3, 4)
    assert line["durationEwmaSec"] == round((40 + 20 + 600) / 3, 3)  # one bucket: the weights cancel
    assert line["qualityMean"] == 0.8 and line["qualityStdDev"] == 0.1 and line["qualitySamples"] == 2
    assert line["costRatio"] == round(0.48 / 0.64, 4)  # mean charged over mean quoted (0.64 per 8 s 720p job)
    assert stats(stack, "--provider", "replicate").keys() == {k for k in stats(stack) if k[0] == "replicate"}


def test_invalid_input_ends_the_flight_but_is_no_sample(fresh_stack: LocalStack) -> None:
    [routed] = submit(fresh_stack, job())
    eventually(lambda: stats(fresh_stack)[("fal", "wan-i2v")]["inFlight"] == 1, "the job in flight")
    outcome(fresh_stack, "failed", jobId=routed.jobId, errorType="invalid_input")
    line = stats(fresh_stack)[("fal", "wan-i2v")]
    assert (line["samples"], line["inFlight"], line["successRate"]) == (0, 0, None)


def test_an_invalid_outcome_changes_no_statistic(fresh_stack: LocalStack) -> None:
    outcome(fresh_stack, "completed", qualityScore=1.5)
    outcome(fresh_stack, "completed", durationSec="42")
    assert stats(fresh_stack)[("fal", "wan-i2v")]["samples"] == 0


def test_200_concurrent_outcomes_from_20_threads_lose_no_update(fresh_stack: LocalStack) -> None:
    start = threading.Barrier(20)
    clients = [fresh_stack.client("events") for _ in range(20)]  # a boto3 session is not thread-safe

    def publish(n: int, events: Any) -> None:
        start.wait()
        for i in range(10):
            if i % 5 == 4:
                outcome(fresh_stack, "failed", events, model="wan-i2v-fast", errorType="provider_error",
                        durationSec=10)
            else:
                outcome(fresh_stack, "completed", events, model="wan-i2v-fast", durationSec=n + 1,
                        qualityScore=0.5 if n % 2 else 1.0)

    threads = [threading.Thread(target=publish, args=(n, c)) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [function] = [f for f in fresh_stack.functions.values() if "ProviderEvents" in f.name]
    assert function.environments > 1  # the updates really were made side by side
    assert [f.error for f in moto_adapters.ASYNC_FAILURES if f.function == function.name] == []
    # Summed over buckets, so a burst across a 5-minute edge changes nothing: no sleep to dodge one.
    # 8 completed per thread at n + 1 s (quality 0.5 for odd n, 1.0 for even), 2 failed at 10 s.
    sums = raw_sums(fresh_stack, "fal", "wan-i2v-fast")
    assert {name: sums.get(name) for name in ("samples", "successes", "durationCount", "durationSum", "qualityCount",
                                              "qualitySum", "qualitySqSum")} == {
        "samples": 200, "successes": 160, "durationCount": 200, "durationSum": 8 * 210 + 40 * 10,
        "qualityCount": 160, "qualitySum": 80 * 0.5 + 80 * 1.0, "qualitySqSum": 80 * 0.25 + 80 * 1.0}
    line = stats(fresh_stack)[("fal", "wan-i2v-fast")]
    assert (line["samples"], line["qualitySamples"]) == (200, 160)
