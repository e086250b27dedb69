"""Routing tables changed live on `local up`, over HTTP: the operator CLI publishes, shadows, canaries,
promotes and rolls back; boto3 submits jobs as a frontend does in bulk; the aws CLI lists and moves an
alarm; the records, the metrics and the announcements say which version decided. No redeploy, no restart.

Version 1 sends short 720p jobs to Replicate first (the bundled version 0 sends them to fal). Each test
starts from version 0 alone (`table rollback`) and awaits the change it makes: the rules function reads
the pointer at most every 2 s, so a test submits jobs until one shows the change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from routing_core.rollout import canary_bucket

from tests.local_up.conftest import LocalUp, job, start_local_up, tuned_table, until

FAL, REPLICATE = "fal/wan-i2v", "replicate/minimax/video-01"


def _replicate_first(table: dict[str, Any]) -> None:
    rule = table["rules"][0]
    rule["name"], rule["route"] = "short-720p-to-replicate", [{"provider": "replicate"},
                                                              {"provider": "fal", "model": "wan-i2v"}]


@pytest.fixture(scope="module")
def up() -> Iterator[LocalUp]:
    yield from start_local_up()


@pytest.fixture(scope="module")
def v1(up: LocalUp, tmp_path_factory: pytest.TempPathFactory) -> int:
    path = tuned_table(tmp_path_factory.mktemp("v1"), _replicate_first)
    entry = json.loads(up.cli("table", "publish", str(path), "--note", "short 720p to replicate", "--json").stdout)
    return int(entry["version"])


def status(up: LocalUp) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(up.cli("table", "status", "--json").stdout)
    return answer


def route(record: dict[str, Any]) -> str:
    return f"{record['provider']}/{record['model']}" if record.get("provider") else str(record.get("rejectionReason"))


def job_in(bucket: range) -> dict[str, Any]:
    """A short 720p job whose jobId falls in the canary buckets given."""
    while canary_bucket((detail := job())["jobId"]) not in bucket:
        pass
    return detail


def run_all(up: LocalUp, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Submit with boto3, as a frontend publishes in bulk (10 entries a call); each job's final record."""
    events = up.client("events")
    for start in range(0, len(jobs), 10):
        answer = events.put_events(Entries=[{"Source": "frontend.api", "DetailType": "video.job.submitted",
                                             "Detail": json.dumps(d)} for d in jobs[start:start + 10]])
        assert answer["FailedEntryCount"] == 0, answer
    return [up.outcome(d["jobId"]) for d in jobs]


def awaited(up: LocalUp, wanted: str, bucket: range = range(100), what: str = "") -> None:
    """Submit jobs until one is routed `wanted` (provider/model): the rules function has read the change."""
    until(lambda: route(run_all(up, [job_in(bucket)])[0]) == wanted, 30, what or f"jobs routed to {wanted}")


def from_version_0(up: LocalUp) -> None:
    """Version 0 alone decides: roll back until it is active, with no shadow and no canary."""
    up.cli("table", "rollback")
    if status(up)["active"] != 0:
        up.cli("table", "rollback")
    assert status(up) | {"since": None} == {"active": 0, "shadow": None, "canary": None, "since": None}
    awaited(up, FAL, what="version 0 deciding again")


def announcements(up: LocalUp) -> list[dict[str, Any]]:
    return [e["detail"] for e in up.events() if e["detail-type"] == "routing.table.changed"]


def test_an_invalid_table_is_refused_and_nothing_changes(up: LocalUp, v1: int, tmp_path: Path) -> None:
    before = (up.cli("table", "versions", "--json").stdout, status(up), len(announcements(up)))
    bad = tuned_table(tmp_path, lambda t: t["rules"][0]["route"].insert(0, {"provider": "fal", "model": "sora-9"}))
    refused = up.cli("table", "publish", str(bad), check=False)
    assert refused.returncode == 2
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: ") and "sora-9" in line, line
    assert (up.cli("table", "versions", "--json").stdout, status(up), len(announcements(up))) == before


def test_published_versions_are_listed_and_shown(up: LocalUp, v1: int, tmp_path: Path) -> None:
    listed = [json.loads(line) for line in up.cli("table", "versions", "--json").stdout.splitlines()]
    entry = next(e for e in listed if e["version"] == v1)
    assert set(entry) == {"version", "sha256", "by", "at", "note"}
    assert (entry["note"], len(entry["sha256"])) == ("short 720p to replicate", 64)
    shown = json.loads(up.cli("table", "show", "--version", str(v1), "--json").stdout)
    assert shown["rules"][0]["name"] == "short-720p-to-replicate"
    assert any(a["version"] == v1 and a["mode"] == "published" for a in announcements(up))


def test_a_shadow_changes_no_route_and_diff_counts_what_it_would_have(up: LocalUp, v1: int) -> None:
    from_version_0(up)
    up.cli("table", "shadow", str(v1))
    until(lambda: (run_all(up, [job()])[0].get("shadow") or {}).get("version") == v1, 30,
          "a record with the shadow decision")
    jobs = [job() for _ in range(5)]
    records = run_all(up, jobs)
    assert {route(r) for r in records} == {FAL}  # the shadow decides nothing
    assert all(r["tableVersion"] == 0 for r in records)
    assert all(r["shadow"] == {"version": v1, "outcome": "route", "provider": "replicate",
                               "model": "minimax/video-01", "reason": None} for r in records)
    diff = up.cli("table", "diff", str(v1), "--json", "--samples", "20").stdout
    [row] = [json.loads(line) for line in diff.splitlines()]
    assert (row["from"], row["to"]) == (FAL, REPLICATE)
    assert row["count"] >= len(jobs)
    assert {d["jobId"] for d in jobs} <= set(row["sampleJobIds"]) or row["count"] > 20
    until(lambda: sum(up.metric("ShadowDisagreements", {"rule": "short-720p-to-fal"})) >= len(jobs), 30,
          "ShadowDisagreements by rule")
    assert sum(up.metric("ShadowDecisions", {"rule": "short-720p-to-fal"})) >= len(jobs)


def test_a_canary_decides_its_share_sticky_by_job_id(up: LocalUp, v1: int, tmp_path: Path) -> None:
    from_version_0(up)
    answer = json.loads(up.cli("table", "canary", str(v1), "--percent", "50", "--json").stdout)
    assert answer["status"]["canary"] == {"version": v1, "percent": 50}
    awaited(up, REPLICATE, range(50), "the canary deciding its share")
    jobs = [job() for _ in range(200)]
    records = dict(zip((d["jobId"] for d in jobs), run_all(up, jobs), strict=True))
    # The share is the jobIds' canary buckets, exactly: random jobIds put about half below 50 (a
    # ±10-point band around 100 of 200 failed about one run in seven, by chance alone).
    in_share = sum(canary_bucket(job_id) < 50 for job_id in records)
    assert 0 < in_share < len(jobs) and sum(route(r) == REPLICATE for r in records.values()) == in_share
    for job_id, record in records.items():  # sticky: the jobId's canary bucket decides, on any replay
        in_canary = canary_bucket(job_id) < 50
        assert (route(record), record["tableVersion"]) == ((REPLICATE, v1) if in_canary else (FAL, 0)), job_id
    inside = next(d for d in jobs if canary_bucket(d["jobId"]) < 50)
    path = tmp_path / "inside.json"
    path.write_text(json.dumps(inside))
    explained = json.loads(up.cli("explain", "--json", "--live", str(path)).stdout)
    assert (explained["provider"], explained["tableVersion"]) == ("replicate", v1)
    until(lambda: up.metric("TableDecisions", {"TableVersion": str(v1), "outcome": "routed"}), 30,
          "TableDecisions of the canary's version")


def test_promote_then_rollback(up: LocalUp, v1: int, tmp_path: Path) -> None:
    from_version_0(up)
    up.cli("table", "promote", str(v1))
    assert status(up)["active"] == v1
    awaited(up, REPLICATE, what="the promoted version deciding")
    records = run_all(up, [job() for _ in range(4)])
    assert {(route(r), r["tableVersion"]) for r in records} == {(REPLICATE, v1)}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job()))
    pinned = json.loads(up.cli("explain", "--json", "--table-version", "0", str(path)).stdout)
    assert (pinned["provider"], pinned["tableVersion"]) == ("fal", 0)

    up.cli("table", "rollback")
    assert status(up)["active"] == 0
    awaited(up, FAL, what="the version before the promote deciding again")
    records = run_all(up, [job() for _ in range(4)])
    assert {(route(r), r["tableVersion"]) for r in records} == {(FAL, 0)}
    modes = [a["mode"] for a in announcements(up) if a["by"] != "alarm"]
    assert modes[-2:] == ["promoted", "rolled_back"]


def test_an_alarm_during_a_canary_ends_it(up: LocalUp, v1: int) -> None:
    from_version_0(up)
    [alarm] = [a["AlarmName"] for a in up.aws("cloudwatch", "describe-alarms")["MetricAlarms"]
               if a["AlarmName"].endswith("-canary-rejections")]
    up.cli("table", "canary", str(v1), "--percent", "50", "--rollback-on", alarm)
    awaited(up, REPLICATE, range(50), "the canary deciding its share")
    up.aws("cloudwatch", "set-alarm-state", "--alarm-name", alarm, "--state-value", "ALARM",
           "--state-reason", "drill: the canary rejects too many jobs")
    ended = until(lambda: next((a for a in announcements(up) if a["by"] == "alarm"), None), 30,
                  "routing.table.changed by the alarm")
    assert (ended["version"], ended["mode"]) == (v1, "canary_ended")
    assert alarm in ended["reason"]
    assert status(up)["canary"] is None
    awaited(up, FAL, range(50), "version 0 deciding the canary's share again")
    up.aws("cloudwatch", "set-alarm-state", "--alarm-name", alarm, "--state-value", "OK",
           "--state-reason", "drill over")


def test_two_concurrent_publishes_get_distinct_versions(up: LocalUp, v1: int, tmp_path: Path) -> None:
    path = tuned_table(tmp_path, _replicate_first)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda note: up.cli("table", "publish", str(path), "--note", note, "--json",
                                                   check=False), ["first", "second"]))
    won = [json.loads(r.stdout)["version"] for r in results if r.returncode == 0]
    for lost in (r for r in results if r.returncode != 0):  # told to retry, nothing written
        assert lost.returncode == 1 and "publish again" in lost.stderr, lost.stderr
    assert won and len(set(won)) == len(won)
    listed = [json.loads(line) for line in up.cli("table", "versions", "--json").stdout.splitlines()]
    assert sorted(e["version"] for e in listed if e["note"] in ("first", "second")) == sorted(won)
