"""`routing-manager job show` and `jobs list` against `local up`, as an operator types them: a routed job, a
rejected one, one that failed (its provider disabled) and was replayed, and a jobId that does not exist.
The path and its timings come from the state machine's log group, as on AWS."""

from __future__ import annotations

import json
from typing import Any

from tests.local_up.conftest import LocalUp, job, until

ROUTED_PATH = ["CheckJobId", "DecideRoute", "CheckDecision", "ClaimJob", "RouteOrReject", "EnqueueJob",
               "MarkRouted", "EmitRouted"]


def show(up: LocalUp, job_id: str) -> dict[str, Any]:
    """`job show --json`, once the execution's log holds its last state (logs arrive after the record)."""
    def shown() -> dict[str, Any] | None:
        view: dict[str, Any] = json.loads(up.cli("job", "show", job_id, "--json").stdout)
        ended = view["executions"] and all(e["status"] not in ("RUNNING", "unknown") for e in view["executions"])
        return view if ended and isinstance(view["explanation"], dict) else None

    result: dict[str, Any] = until(shown, 30, f"job show {job_id} to have its path")
    return result


def listed(up: LocalUp, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in up.cli("jobs", "list", "--json", *args).stdout.splitlines()]


def test_a_routed_job_shows_its_decision_path_message_and_event(up: LocalUp) -> None:
    detail = job()
    record = up.run(detail)
    view = show(up, detail["jobId"])
    assert {k: view[k] for k in ("jobId", "userId", "outcome", "provider", "model", "reason", "messageId")} == {
        "jobId": detail["jobId"], "userId": "user-123", "outcome": "routed", "provider": "fal", "model": "wan-i2v",
        "reason": None, "messageId": record["messageId"]}
    assert (view["rule"], view["quoteUsd"], view["tableVersion"], view["queue"]) == (
        "short-720p-to-fal", 0.64, 0, "FalJobQueue")
    assert view["path"] == ROUTED_PATH
    assert view["liveState"] == "fresh" and 0 <= view["liveStateAgeSec"] <= 2  # the control table was read
    states = view["executions"][0]["states"]
    assert all(s["durationMs"] is not None and s["enteredAt"] for s in states)
    assert [e["detailType"] for e in view["events"]] == ["video.job.routed"]
    assert view["replays"] == []
    text = up.cli("job", "show", detail["jobId"]).stdout
    assert "routed (ROUTED)" in text and "fal/wan-i2v" in text and "EmitRouted" in text and record["messageId"] in text


def test_a_rejected_job_shows_its_reason_and_rejection_event(up: LocalUp) -> None:
    detail = job(lengthSec=0)
    record = up.run(detail)
    view = show(up, detail["jobId"])
    assert (view["outcome"], view["reason"], view["provider"], view["messageId"]) == (
        "rejected", record["rejectionReason"], None, None)
    assert view["path"][-2:] == ["MarkRejected", "EmitRejected"]
    assert [e["detailType"] for e in view["events"]] == ["video.job.rejected"]
    assert view["explanation"]["reason"] == record["rejectionReason"]
    assert {"jobId": detail["jobId"], "userId": "user-123", "outcome": "rejected",
            "reason": record["rejectionReason"], "provider": None}.items() <= next(
        row for row in listed(up, "--outcome", "rejected") if row["jobId"] == detail["jobId"]).items()


def test_a_failed_then_replayed_job_shows_both_executions(up: LocalUp) -> None:
    up.cli("provider", "disable", "fal", "--reason", "incident", "--wait")
    try:
        detail = job(provider="fal")
        failed = up.run(detail)
        assert (failed["status"], failed["failureReason"]) == ("FAILED", "provider_unavailable:fal")
        before = show(up, detail["jobId"])
        assert (before["outcome"], before["reason"], before["replays"]) == (
            "failed", "provider_unavailable:fal", [])
        assert before["path"][-2:] == ["MarkUnavailable", "EmitUnavailable"]
        assert detail["jobId"] in [row["jobId"] for row in listed(up, "--outcome", "failed", "--reason",
                                                                      "provider_unavailable:fal")]
    finally:
        up.cli("provider", "enable", "fal", "--wait")
    up.cli("replay", "--job-id", detail["jobId"], "--yes")
    until(lambda: (up.record(detail["jobId"]) or {}).get("status") == "ROUTED", 30, "the replay to route the job")
    view = until(lambda: next((v for v in [show(up, detail["jobId"])] if len(v["executions"]) == 2), None), 30,
                 "job show to list the replay")
    assert (view["outcome"], view["provider"], view["reason"], view["attempts"]) == ("routed", "fal", None, 2)
    assert view["path"] == ROUTED_PATH
    assert [r["status"] for r in view["replays"]] == ["SUCCEEDED"]
    assert view["executions"][0]["states"][-1]["state"] == "EmitUnavailable"
    assert [e["detailType"] for e in view["events"]] == ["video.job.rejected", "video.job.routed"]


def test_an_unknown_job_is_one_line_and_exit_1(up: LocalUp) -> None:
    result = up.cli("job", "show", "no-such-job", check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: no job no-such-job in Jobs-local (check the jobId, or --stack: "
                                          "see jobs list)"]


def test_jobs_list_pages_newest_first_and_filters_by_user(up: LocalUp) -> None:
    details = [job(userId="user-list") for _ in range(3)]
    for detail in details:
        up.run(detail)
    rows = listed(up, "--user", "user-list", "--since", "1h")
    assert [r["jobId"] for r in rows] == [d["jobId"] for d in reversed(details)]
    assert all(r["outcome"] == "routed" and r["provider"] == "fal" and r["at"] for r in rows)
    assert [r["jobId"] for r in listed(up, "--user", "user-list", "--limit", "2")] == [
        d["jobId"] for d in reversed(details)][:2]
    bad = up.cli("jobs", "list", "--outcome", "lost", check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("error: invalid value for '--outcome'")


def test_the_providers_outcome_shows_once_it_reports_and_only_from_the_provider_the_job_went_to(
        up: LocalUp) -> None:
    detail = job()
    up.run(detail)
    assert show(up, detail["jobId"])["providerOutcome"] is None
    assert "no outcome yet" in up.cli("job", "show", detail["jobId"]).stdout

    def report(provider: str, model: str, **fields: Any) -> None:
        entry = {"Source": f"{provider}.invoker", "DetailType": "video.job.completed",
                 "Detail": json.dumps({"jobId": detail["jobId"], "provider": provider, "model": model, **fields})}
        assert up.aws("events", "put-events", "--entries", json.dumps([entry]))["FailedEntryCount"] == 0

    def samples(provider: str) -> int:
        rows = [json.loads(line) for line in up.cli("provider", "stats", "--json").stdout.splitlines()]
        return sum(row["samples"] for row in rows if row["provider"] == provider)

    before = samples("replicate")
    report("replicate", "minimax/video-01", durationSec=1)  # not where the job went: never kept on it
    until(lambda: samples("replicate") > before, 30, "the provider events function to count it")
    assert show(up, detail["jobId"])["providerOutcome"] is None
    report("fal", "wan-i2v", durationSec=41.5, costUsd=0.61, qualityScore=0.8)
    kept = until(lambda: show(up, detail["jobId"])["providerOutcome"], 30, "the outcome on the job's record")
    assert kept == {"type": "completed", "model": "wan-i2v", "at": kept["at"], "durationSec": 41.5,
                    "costUsd": 0.61, "qualityScore": 0.8}
    assert "durationSec 41.5" in up.cli("job", "show", detail["jobId"]).stdout
