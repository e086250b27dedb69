"""Kill switch, timed disable, saturation, heartbeat and the dashboard's metrics, through `local up`
over HTTP: the operator CLI, the aws CLI and boto3 as a user runs them."""

from __future__ import annotations

import json
import re
from typing import Any

from routing_manager import project
from tests.local_up.conftest import LocalUp, job, until

STACK = "routing-manager-local"


def status(up: LocalUp) -> list[dict[str, Any]]:
    return [json.loads(line) for line in up.cli("provider", "status", "--json").stdout.splitlines()]


def provider_of(record: dict[str, Any]) -> Any:
    return record.get("provider")


def test_kill_switch_spills_over_and_the_heartbeat_reports_it(up: LocalUp) -> None:
    assert provider_of(up.run(job())) == "fal"
    up.cli("provider", "disable", "fal", "--reason", "fal incident 4711")
    assert {"provider": "fal", "model": None, "state": "disabled", "reason": "fal incident 4711",
            "until": None} in status(up)
    # Within the rules function's 2 s cache, the next eligible job goes to Replicate.
    until(lambda: provider_of(up.run(job())) == "replicate", 30, "a job to spill over to replicate")
    strict = up.run(job(provider="fal"))
    assert (strict["status"], strict["failureReason"]) == ("FAILED", "provider_unavailable:fal")
    error, beat = up.heartbeat()
    assert error is None and beat["providers"]["fal"]["fal"] == "disabled"
    assert up.metric("ProviderAvailable", {"provider": "fal"}, "Minimum")[-1] == 0
    up.cli("provider", "enable", "fal")
    until(lambda: provider_of(up.run(job())) == "fal", 30, "jobs to go back to fal")
    error, beat = up.heartbeat()
    assert error is None and beat["providers"]["fal"]["fal"] == "available"


def test_a_timed_disable_expires_by_itself(up: LocalUp) -> None:
    up.cli("provider", "disable", "fal", "--reason", "maintenance", "--for", "8s")
    until(lambda: provider_of(up.run(job())) == "replicate", 30, "the disable to take effect")
    until(lambda: provider_of(up.run(job())) == "fal", 30, "the timed disable to expire")
    assert not [s for s in status(up) if s["state"] == "disabled"]


def test_a_saturation_alarm_spills_jobs_over_until_it_clears(up: LocalUp) -> None:
    alarm = f"{STACK}-saturated-fal"
    up.aws("cloudwatch", "set-alarm-state", "--alarm-name", alarm, "--state-value", "ALARM",
           "--state-reason", "drill: fal's queue is old")
    until(lambda: provider_of(up.run(job())) == "replicate", 30, "jobs to spill over from a saturated fal")
    up.aws("cloudwatch", "set-alarm-state", "--alarm-name", alarm, "--state-value", "OK", "--state-reason", "drill")
    until(lambda: provider_of(up.run(job())) == "fal", 30, "jobs to go back to fal")


def test_the_heartbeat_and_every_metric_the_dashboard_reads(up: LocalUp) -> None:
    detail = job()
    up.run(detail)
    up.submit(detail)  # a duplicate
    up.run(job(lengthSec=400))  # rejected
    up.cli("provider", "disable", "fal", "--reason", "drill")
    until(lambda: up.run(job(provider="fal"))["status"] == "FAILED", 30, "a strict job to wait for fal")
    up.cli("provider", "enable", "fal")
    error, beat = up.heartbeat()
    assert error is None and beat["heartbeat"] == 1
    assert up.metric("Agent/RoutingManager/Heartbeat")

    def dashboard_metrics_seen() -> list[tuple[str, frozenset[tuple[str, str]]]]:
        seen = {(m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m.get("Dimensions", [])))
                for m in up.client("cloudwatch").list_metrics(Namespace="VideoJobRouting")["Metrics"]}
        return [wanted for wanted in _dashboard_metrics() if wanted not in seen]

    until(lambda: not dashboard_metrics_seen(), 30, f"the dashboard's metrics: missing {dashboard_metrics_seen()}")


def _dashboard_metrics() -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """Every VideoJobRouting metric the template's dashboard draws, with its dimensions."""
    body = (project.ROOT / "template.yaml").read_text()
    wanted = set()
    for entry in re.findall(r'\[\s*"VideoJobRouting",\s*([^\]]*)\]', body):
        parts = [p for p in json.loads(f"[{entry.rstrip(', ')}]") if isinstance(p, str)]
        name, pairs = parts[0], parts[1:]
        if any("${" in p for p in pairs):
            continue  # a per-provider line: its provider is a substitution, checked by the provider metrics
        wanted.add((name, frozenset(zip(pairs[::2], pairs[1::2], strict=True))))
    return wanted
