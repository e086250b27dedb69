"""Batches through `local up` over HTTP: `routing-manager publish --batch` and `aws events put-events`
publish, the batch workflow runs in the deployed stack, and boto3 reads the records and announcements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.local_up.conftest import LocalUp, job, until


def summary_of(up: LocalUp, batch_id: str) -> dict[str, Any]:
    found: dict[str, Any] = until(lambda: next((e["detail"] for e in up.events()
                                                if e["detail-type"] == "video.job.batch.routed"
                                                and e["detail"]["batchId"] == batch_id), None),
                                  60, f"the summary of {batch_id}")
    return found


def test_publish_batch_routes_each_job_and_announces_the_batch(up: LocalUp, tmp_path: Path) -> None:
    jobs = [job() for _ in range(11)] + [job(lengthSec=0)]
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(jobs))

    published = up.cli("publish", str(path), "--batch", "--json", check=False)

    assert published.returncode == 2 and "11 sent, 1 invalid, 0 not sent" in published.stderr  # never sent
    [batch_id] = {line["batchId"] for line in map(json.loads, published.stdout.splitlines()) if line.get("batchId")}
    records = [up.outcome(j["jobId"]) for j in jobs[:11]]
    assert [r["status"] for r in records] == ["ROUTED"] * 11 and {r["batchId"] for r in records} == {batch_id}
    assert up.record(jobs[-1]["jobId"]) is None
    assert {k: summary_of(up, batch_id)[k] for k in ("jobs", "routed", "rejected", "duplicate", "failed")} == {
        "jobs": 11, "routed": 11, "rejected": 0, "duplicate": 0, "failed": 0}
    routed = {e["detail"]["jobId"] for e in up.events() if e["detail-type"] == "video.job.routed"}
    assert {j["jobId"] for j in jobs[:11]} <= routed

    # A frontend's own batch event, through the aws CLI: the router rejects its invalid job alone,
    # and a job routed above is a duplicate, routed once.
    invalid = job(lengthSec="8")
    detail = {"batchId": "http-batch-2", "jobs": [invalid, jobs[0]]}
    entry = {"Source": "frontend.api", "DetailType": "video.job.batch.submitted", "Detail": json.dumps(detail)}
    assert up.aws("events", "put-events", "--entries", json.dumps([entry]))["FailedEntryCount"] == 0
    record = up.outcome(invalid["jobId"])
    assert (record["status"], record["rejectionReason"]) == ("REJECTED", "invalid_length:not_a_number")
    assert {k: summary_of(up, "http-batch-2")[k] for k in ("jobs", "routed", "rejected", "duplicate")} == {
        "jobs": 2, "routed": 0, "rejected": 1, "duplicate": 1}
    assert up.record(jobs[0]["jobId"])["claimedBy"] == records[0]["claimedBy"]  # type: ignore[index]
