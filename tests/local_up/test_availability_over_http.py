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
    assert {"provider": "fal", "model": None, "providerRegion": None, "state": "disabled",
            "reason": "fal incident 4711", "until": None} in status(up)
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


def message_in(up: LocalUp, queue_output: str, job_id: str) -> dict[str, Any] | None:
    """The job's message in one of the stack's queues (`aws sqs receive-message`), once it is there."""
    answer = up.aws("sqs", "receive-message", "--queue-url", up.outputs[queue_output], "--max-number-of-messages",
                    "10", "--message-attribute-names", "All", "--visibility-timeout", "0") or {}
    return next((m for m in answer.get("Messages", []) if json.loads(m["Body"])["jobId"] == job_id), None)


def test_a_provider_region_out_fails_over_and_residency_is_kept(up: LocalUp, tmp_path: Any) -> None:
    """fal serves from us-east-1 and eu-west-1 (the shipped routing table): one region's kill switch fails
    its jobs over to the other; a job that must stay in the US waits for its one US region."""
    changed = json.loads(up.cli("provider", "disable", "fal", "--provider-region", "us-east-1", "--reason",
                                "fal us-east-1 outage", "--json").stdout)
    assert (changed["provider"], changed["providerRegion"], changed["state"]) == ("fal", "us-east-1", "disabled")
    assert {"provider": "fal", "model": None, "providerRegion": "us-east-1", "state": "disabled",
            "reason": "fal us-east-1 outage", "until": None} in status(up)
    moved = until(lambda: (r := up.run(job())) and r.get("providerRegion") == "eu-west-1" and r, 30,
                  "a fal job to fail over to eu-west-1")
    assert (moved["provider"], moved["queue"]) == ("fal", "FalEuJobQueue")
    message = until(lambda: message_in(up, "FalEuJobQueueUrl", moved["jobId"]), 30, "the job's message in eu-west-1")
    assert message["MessageAttributes"]["providerRegion"]["StringValue"] == "eu-west-1"
    routed = until(lambda: [e for e in up.events() if e["detail"].get("jobId") == moved["jobId"]], 30,
                   "the job's routed event")
    assert routed[0]["detail"]["providerRegion"] == "eu-west-1"
    view = json.loads(up.cli("job", "show", moved["jobId"], "--json").stdout)
    assert (view["provider"], view["providerRegion"], view["queue"]) == ("fal", "eu-west-1", "FalEuJobQueue")
    assert f"fal/{moved['model']} in eu-west-1" in up.cli("job", "show", moved["jobId"]).stdout
    event = tmp_path / "job.json"
    event.write_text(json.dumps(job()))
    assert "failed over from us-east-1 disabled: fal us-east-1 outage" in up.cli("explain", "--live", str(event)).stdout

    us_only = up.run(job(routing={"residency": "us"}))  # replicate lists no regions; eu-west-1 is not in the US
    assert (us_only["status"], us_only["failureReason"]) == ("FAILED", "region_unavailable")
    eu = up.run(job(routing={"residency": "eu"}))  # this router runs in us-east-1: final, not replayable here
    assert (eu["status"], eu["rejectionReason"]) == ("REJECTED", "preferences_unsatisfiable")
    unknown = up.run(job(routing={"regions": ["ap-south-1"]}))
    assert (unknown["status"], unknown["rejectionReason"]) == ("REJECTED", "invalid_routing")

    wrong = up.cli("provider", "disable", "fal", "--provider-region", "ap-south-1", "--reason", "x", check=False)
    assert (wrong.returncode, wrong.stderr.strip()) == (2, "error: --provider-region 'ap-south-1': fal does not "
                                                           "serve from it (the routing table lists: us-east-1, "
                                                           "eu-west-1)")
    up.cli("provider", "enable", "fal", "--provider-region", "us-east-1")
    until(lambda: up.run(job()).get("providerRegion") == "us-east-1", 30, "fal jobs to go back to us-east-1")
    back = up.run(job(routing={"residency": "us"}))
    assert (back["status"], back["provider"], back["providerRegion"]) == ("ROUTED", "fal", "us-east-1")


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
