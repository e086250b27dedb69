"""Live statistics through `local up` over HTTP: jobs routed by the stack, outcomes sent with the aws CLI
as a provider invoker does, and `routing-manager provider stats --json` reading them back."""

from __future__ import annotations

import json
from typing import Any

from tests.local_up.conftest import LocalUp, job, until


def outcome(up: LocalUp, kind: str, job_id: str, **fields: Any) -> None:
    detail = {"jobId": job_id, "provider": "fal", "model": "wan-i2v", **fields}
    entry = {"Source": "fal.invoker", "DetailType": f"video.job.{kind}", "Detail": json.dumps(detail)}
    assert up.aws("events", "put-events", "--entries", json.dumps([entry]))["FailedEntryCount"] == 0


def fal_stats(up: LocalUp) -> dict[str, Any]:
    lines = [json.loads(line) for line in up.cli("provider", "stats", "--json").stdout.splitlines()]
    return next(line for line in lines if (line["provider"], line["model"]) == ("fal", "wan-i2v"))


def test_outcomes_sent_with_the_aws_cli_become_statistics(up: LocalUp) -> None:
    first, second = up.run(job()), up.run(job())
    assert (first["provider"], second["provider"]) == ("fal", "fal")
    until(lambda: fal_stats(up)["inFlight"] == 2, 30, "both routed jobs to be in flight")

    outcome(up, "completed", first["jobId"], durationSec=30, costUsd=0.64, qualityScore=0.9)
    outcome(up, "failed", second["jobId"], errorType="provider_error", durationSec=90)
    line = until(lambda: (s := fal_stats(up))["samples"] == 2 and s, 30, "both outcomes to be counted")
    assert line["inFlight"] == 0 and line["successRate"] == 0.5 and line["qualityMean"] == 0.9
    assert 30 <= line["durationEwmaSec"] <= 90  # 60 within a bucket; a bucket edge between them moves it
    assert {"provider", "model", "samples", "durationEwmaSec", "successRate", "qualityMean", "inFlight"} <= line.keys()

    table = up.cli("provider", "stats").stdout
    assert "fal" in table and "wan-i2v" in table and "durationEwmaSec" in table


def test_an_unknown_provider_is_one_line_and_exit_2(up: LocalUp) -> None:
    result = up.cli("provider", "stats", "--provider", "nope", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown provider 'nope' (the routing table has: ")
