"""`routing-manager publish` and publish_jobs against the local stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from routing_manager.cli import app
from routing_manager.local.stack import LocalStack, execution_arns, wait_for_executions
from routing_manager.publish import MAX_REQUEST_BYTES, publish_jobs
from tests.support import job


class CountingClient:
    """The stack's events client, recording each PutEvents call; can fail entries."""

    def __init__(self, stack: LocalStack, fail_first: int = 0) -> None:
        self.client = stack.client("events")
        self.calls: list[int] = []
        self.fail_first = fail_first

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.calls.append(len(Entries))
        if self.fail_first:
            self.fail_first -= 1
            sent = self.client.put_events(Entries=Entries[1:])["Entries"] if len(Entries) > 1 else []
            return {"FailedEntryCount": 1, "Entries": [
                {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}, *sent]}
        return dict(self.client.put_events(Entries=Entries))


def test_batches_by_ten_and_reports_event_ids(stack: LocalStack) -> None:
    before = execution_arns(stack)
    client = CountingClient(stack)
    jobs = [job() for _ in range(23)]
    results = publish_jobs(jobs, client, event_bus=stack.outputs["EventBusName"])
    assert client.calls == [10, 10, 3]
    assert all(r.ok and r.error is None for r in results)
    assert [r.jobId for r in results] == [j["jobId"] for j in jobs]
    ran = wait_for_executions(stack, 23, already=before)
    assert sorted(e.job_id for e in ran) == sorted(j["jobId"] for j in jobs)


def test_batches_by_the_256_kb_limit(stack: LocalStack) -> None:
    client = CountingClient(stack)
    jobs = [job(prompt="p" * 30_000) for _ in range(10)]  # ~30 KB each, within the contract: eight per request
    before = execution_arns(stack)
    results = publish_jobs(jobs, client, event_bus=stack.outputs["EventBusName"])
    assert client.calls == [8, 2]
    assert all(r.ok for r in results)
    wait_for_executions(stack, 10, already=before)


def test_failed_entries_are_retried_with_backoff(stack: LocalStack) -> None:
    client = CountingClient(stack, fail_first=2)
    waits: list[float] = []
    before = execution_arns(stack)
    results = publish_jobs([job() for _ in range(3)], client, event_bus=stack.outputs["EventBusName"],
                           sleep=waits.append)
    assert all(r.ok for r in results)
    assert client.calls == [3, 1, 1]  # the failed entry alone, twice
    assert len(waits) == 2 and waits[0] <= 0.2 and waits[1] <= 0.4
    assert len(wait_for_executions(stack, 3, already=before)) == 3


def test_invalid_jobs_are_reported_and_not_sent(stack: LocalStack) -> None:
    client = CountingClient(stack)
    jobs = [job(lengthSec="8"), job(prompt=...), job(), {"not": "a job"}, job(prompt="x" * (MAX_REQUEST_BYTES + 1))]
    results = publish_jobs(jobs, client, event_bus=stack.outputs["EventBusName"])
    assert [r.ok for r in results] == [False, False, True, False, False]
    assert results[0].error == "invalid job: lengthSec: invalid_length:not_a_number"
    assert results[1].error == "invalid job: prompt: Field required"
    assert "jobId: Field required" in (results[3].error or "")
    assert (results[4].error or "").startswith("invalid job: ") and "job_too_large" in (results[4].error or "")
    assert client.calls == [1]


def test_cli_publishes_files_and_stdin(stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(job()))
    bad.write_text(json.dumps(job(lengthSec=-1)))
    monkeypatch.setattr("routing_manager.cli._aws_client", lambda *a: stack.client("events"))
    before = execution_arns(stack)
    bus = ["--event-bus", stack.outputs["EventBusName"]]
    result = CliRunner().invoke(app, ["publish", "--json", str(good), str(bad), *bus])
    assert result.exit_code == 2  # an invalid job: the valid one is still sent
    # Only publish's lines: the in-process rules Lambda prints its EMF metrics from its own threads.
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"origin"')]
    assert len(lines) == 2, result.stdout
    assert lines[0]["eventId"] and lines[0]["error"] is None
    assert lines[1]["eventId"] is None
    assert lines[1]["error"] == "invalid job: lengthSec: invalid_length:must_be_1-300_seconds"
    assert "1 sent, 1 invalid, 0 not sent" in result.stderr
    piped = CliRunner().invoke(app, ["publish", "-", *bus], input=json.dumps([job(), job()]))
    assert piped.exit_code == 0 and piped.stdout.count("sent <stdin>") == 2
    assert len(wait_for_executions(stack, 3, already=before)) == 3


def test_cli_reads_json_lines_and_a_bom_and_goes_on_past_a_bad_file(
        stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("routing_manager.cli._aws_client", lambda *a: stack.client("events"))
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "a-lines.json").write_text("\n".join(json.dumps(job()) for _ in range(3)) + "\n\n")
    (folder / "b-bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(job()).encode())
    (folder / "c-broken.json").write_text('{"jobId": ')
    (folder / "d-link.json").symlink_to(tmp_path / "nowhere.json")
    (folder / "e-dir.json").mkdir()
    hostile = job(jobId="evil\x1b[2J\x07-id", lengthSec="8")
    (folder / "f-hostile.json").write_text(json.dumps(hostile))
    before = execution_arns(stack)
    result = CliRunner().invoke(app, ["publish", str(folder), "--event-bus", stack.outputs["EventBusName"]])
    assert result.exit_code == 2  # a bad file and an invalid job; the good ones are sent
    sent = [line for line in result.stdout.splitlines() if line.startswith("sent ")]
    assert len(sent) == 4
    assert f"sent {folder / 'a-lines.json'}:2 " in result.stdout  # JSON Lines: origin names the line
    assert f"skipped {folder / 'd-link.json'}: a broken link" in result.stderr
    assert f"skipped {folder / 'e-dir.json'}: not a file" in result.stderr
    assert f"{folder / 'c-broken.json'}: not JSON" in result.stderr
    assert "\x1b" not in result.stderr and "evil\\x1b[2J\\x07-id" in result.stderr  # escaped, not executed
    assert result.stderr.strip().splitlines()[-1] == "4 sent, 1 invalid, 0 not sent, 1 file unreadable"
    assert len(wait_for_executions(stack, 4, already=before)) == 4
