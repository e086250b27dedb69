"""The batch contract (`video.job.batch.submitted`): its limits, as the router checks them and the pydantic
model states them, and `publish --batch` packing jobs into batch events by count and by size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from routing_core import batch
from routing_core.contract import BatchSubmitted

from routing_manager.events import put_events_entry
from routing_manager.publish import entry_size, pack, publish_batch_events, publish_batches
from tests.unit.test_cli_errors import _closed_port, run


def job(n: int, prompt: str = "A corgi surfing") -> dict[str, Any]:
    return {"jobId": f"j-{n}", "userId": "u-1", "prompt": prompt, "lengthSec": 8, "resolution": "720p"}


class Recording:
    """An events client that takes every entry and keeps what it was sent."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        self.calls.append(Entries)
        ids = [{"EventId": f"e-{len(self.calls)}-{i}"} for i in range(len(Entries))]
        return {"FailedEntryCount": 0, "Entries": ids}


def _at_size(target: int) -> dict[str, Any]:
    """A batch detail whose PutEvents entry is exactly `target` bytes."""
    detail = {"batchId": "b-1", "jobs": [job(1, "")]}
    detail["jobs"][0]["prompt"] = "x" * (target - batch.entry_bytes(detail))
    assert batch.entry_bytes(detail) == target
    return detail


def test_a_batch_holds_one_to_a_hundred_jobs_within_a_putevents_entry() -> None:
    assert batch.malformed({"batchId": "b", "jobs": [job(i) for i in range(100)]}) is None
    assert batch.malformed(_at_size(batch.MAX_ENTRY_BYTES)) is None
    assert batch.malformed({"batchId": "b", "jobs": [job(i) for i in range(101)]})[0] == batch.TOO_MANY_JOBS
    assert batch.malformed(_at_size(batch.MAX_ENTRY_BYTES + 1))[0] == batch.TOO_LARGE
    assert batch.malformed({"batchId": "b", "jobs": []})[0] == batch.EMPTY
    assert batch.malformed({"batchId": " ", "jobs": [job(1)]})[0] == batch.MISSING_BATCH_ID
    assert batch.malformed({"batchId": "b", "jobs": {"0": job(1)}})[0] == batch.JOBS_NOT_A_LIST
    assert batch.malformed([job(1)])[0] == batch.NOT_AN_OBJECT


def test_the_model_states_the_same_limits_and_leaves_the_jobs_to_the_router() -> None:
    BatchSubmitted.model_validate({"batchId": "b", "jobs": [{"jobId": "no prompt"}, job(2)]})  # decided one by one
    BatchSubmitted.model_validate(_at_size(batch.MAX_ENTRY_BYTES))
    for bad in ({"batchId": "b", "jobs": [job(i) for i in range(101)]}, _at_size(batch.MAX_ENTRY_BYTES + 1),
                {"batchId": "b", "jobs": []}, {"jobs": [job(1)]}):
        with pytest.raises(ValidationError):
            BatchSubmitted.model_validate(bad)


def test_entry_size_is_what_eventbridge_counts_of_the_entry_publish_sends() -> None:
    detail = {"batchId": "b-é", "jobs": [job(1, "un corgi qui surfe ☀"), job(2)]}
    entry = put_events_entry(detail, None, batch.SOURCE, batch.BATCH_DETAIL_TYPE)
    assert batch.entry_bytes(detail) == entry_size(entry)


def test_pack_fills_batches_by_count_and_by_size_in_order() -> None:
    by_count = pack([job(i) for i in range(250)], lambda n: f"b-{n}")
    assert [len(g) for g in by_count] == [100, 100, 50]
    assert [i for g in by_count for i in g] == list(range(250))
    large = [job(i, "x" * 30_000) for i in range(20)]  # about 30 KB each: 8 fit in 256 KiB
    by_size = pack(large, lambda n: f"b-{n}")
    assert [len(g) for g in by_size] == [8, 8, 4]
    for n, group in enumerate(by_size):
        size = batch.entry_bytes({"batchId": f"b-{n}", "jobs": [large[i] for i in group]})
        assert size <= batch.MAX_ENTRY_BYTES
        if n < len(by_size) - 1:  # full: the next job would not have fitted
            assert size + 2 + len(json.dumps(large[group[-1] + 1])) > batch.MAX_ENTRY_BYTES


def test_publish_batches_sends_each_batch_as_one_event_and_names_it_per_job() -> None:
    client = Recording()
    jobs = [job(i) for i in range(230)] + [{"jobId": "bad", "userId": "u"}]
    results = publish_batches(jobs, client, batch_prefix="b")
    assert [len(call) for call in client.calls] == [3]  # three batch events, one PutEvents call
    sent = [json.loads(entry["Detail"]) for entry in client.calls[0]]
    assert [(d["batchId"], len(d["jobs"])) for d in sent] == [("b-1", 100), ("b-2", 100), ("b-3", 30)]
    assert {e["DetailType"] for e in client.calls[0]} == {"video.job.batch.submitted"}
    assert [r.outcome for r in results].count("sent") == 230 and results[-1].outcome == "invalid"
    assert results[0].batchId == "b-1" and results[229].batchId == "b-3"
    assert results[0].eventId == results[99].eventId != results[100].eventId


def test_a_given_batch_over_the_limit_is_refused_and_not_sent() -> None:
    client = Recording()
    over = {"batchId": "b-big", "jobs": [job(i) for i in range(101)]}
    refused, accepted = publish_batch_events([over, _at_size(batch.MAX_ENTRY_BYTES)], client)
    assert refused.outcome == "invalid" and "invalid_batch:too_many_jobs" in (refused.error or "")
    assert accepted.ok and [len(call) for call in client.calls] == [1]


@pytest.mark.parametrize("detail", [{"batchId": "b-big", "jobs": [job(i) for i in range(101)]},
                                    _at_size(batch.MAX_ENTRY_BYTES + 1)], ids=["101 jobs", "one byte over"])
def test_publish_refuses_an_over_limit_batch_in_one_line(tmp_path: Path, detail: dict[str, Any]) -> None:
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(detail))
    result = run(["publish", str(path), "--endpoint-url", _closed_port()], tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {path}") and "invalid_batch:" in line and "(split it" in line, line
    assert "Traceback" not in result.stderr
