"""The rules Lambda's batch entry point: one invoke decides a whole `video.job.batch.submitted`, each job
exactly as the single job would be (same decision, reason codes, one metric line per decision)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from routing_core import batch

from tests.unit.test_handler import SENTINEL, context, lines


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The rules Lambda's module, imported fresh as a cold start would (as tests/unit/test_handler.py does)."""
    import importlib
    import logging
    import sys

    monkeypatch.setenv("FAL_QUEUE_URL", "https://sqs.test/FalJobQueue")
    monkeypatch.setenv("REPLICATE_QUEUE_URL", "https://sqs.test/ReplicateJobQueue")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VideoJobRouting")
    logging.Logger.manager.loggerDict.pop("routing-manager", None)
    sys.modules.pop("app", None)
    return lambda: importlib.import_module("app")

KEYS = ("outcome", "provider", "model", "queue", "queueUrl", "reason", "rule", "quoteUsd", "quoteUsdText", "priority",
        "tableVersion", "recordAttributes")


def job(n: int, **changes: Any) -> dict[str, Any]:
    return {"jobId": f"job-{n}", "userId": "u", "prompt": SENTINEL, "lengthSec": 8, "resolution": "720p", **changes}


def mixed() -> list[dict[str, Any]]:
    """A 100-job batch: 90 valid and unique, 7 invalid (one reason code each), 3 repeating earlier jobIds."""
    jobs = [job(n) for n in range(90)]
    jobs[10]["provider"], jobs[20]["provider"] = "replicate", "replicate"  # valid: to Replicate
    invalid = [job(100, lengthSec="8"), job(101, lengthSec=0), {"jobId": "job-102", "userId": "u"},
               job(103, provider="nope"), {"userId": "u", "prompt": "p"}, job(105, jobId="x" * 600),
               job(106, routing={"order": ["unknown-provider"]})]
    return [*jobs[:50], *invalid, job(3), *jobs[50:], job(3), job(89)]


def test_each_job_is_decided_as_it_would_be_alone(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    app = handler()
    jobs = mixed()
    plan = app.lambda_handler({"batch": {"batchId": "b-1", "jobs": jobs}, "creditsTable": ""}, context())
    assert plan["batchId"] == "b-1" and plan["reason"] is None
    assert [entry["index"] for entry in plan["jobs"]] == list(range(100))
    seen: set[str] = set()
    for entry, detail in zip(plan["jobs"], jobs, strict=True):
        job_id = detail.get("jobId")
        if job_id in seen:
            assert entry["outcome"] == "duplicate" and not entry["recorded"], entry
            continue
        if isinstance(job_id, str) and len(job_id) <= 512:
            seen.add(job_id)
        if not isinstance(job_id, str):  # as the single workflow's CheckJobId: no key, no decision asked
            assert (entry["reason"], entry["recorded"], entry["jobId"]) == ("missing_required_field:jobId", False, None)
            continue
        alone = app.lambda_handler({"detail": detail, "creditsTable": ""}, context())
        assert {k: entry[k] for k in KEYS} == {k: alone[k] for k in KEYS}, detail.get("jobId")
        assert entry["recorded"] == (not alone["reason"] or not alone["reason"].startswith("invalid_job_id:"))
    assert plan["counts"] == {"route": 90, "reject": 7, "duplicate": 3}
    assert SENTINEL not in capsys.readouterr().out


def test_one_metric_line_per_decided_job(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    app = handler()
    capsys.readouterr()
    jobs = [job(1), job(2, lengthSec="8"), job(1), {"userId": "u"}]
    app.lambda_handler({"batch": {"batchId": "b-2", "jobs": jobs}}, context())
    metrics = [line for line in lines(capsys.readouterr().out) if "RoutingAttempts" in line]
    assert [(m["jobId"], m["outcome"]) for m in metrics] == [("job-1", "routed"), ("job-2", "rejected")]


def test_routed_jobs_go_in_send_groups_of_ten_per_queue(handler: Any) -> None:
    plan = handler().lambda_handler({"batch": {"batchId": "b-3", "jobs": mixed()}}, context())
    groups = plan["sendGroups"]
    assert all(1 <= len(g["jobs"]) <= batch.SEND_BATCH_ENTRIES for g in groups)
    routed = [e["index"] for e in plan["jobs"] if e["outcome"] == "route"]
    assert sorted(i for g in groups for i in g["jobs"]) == sorted(routed)
    for group in groups:
        assert {plan["jobs"][i]["queueUrl"] for i in group["jobs"]} == {group["queueUrl"]}
    assert {g["queue"] for g in groups} == {"FalJobQueue", "ReplicateJobQueue"}


@pytest.mark.parametrize(("detail", "reason"), [
    ({"batchId": "b", "jobs": [job(n) for n in range(101)]}, "invalid_batch:too_many_jobs"),
    ({"batchId": "b", "jobs": []}, "invalid_batch:empty"),
    ({"jobs": [job(1)]}, "invalid_batch:missing_batch_id"),
    ({"batchId": "b", "jobs": "job-1"}, "invalid_batch:jobs_not_a_list"),
    ("not a batch", "invalid_batch:not_an_object"),
])
def test_a_malformed_batch_is_rejected_whole_and_decides_nothing(handler: Any, capsys: pytest.CaptureFixture[str],
                                                                 detail: Any, reason: str) -> None:
    app = handler()
    capsys.readouterr()
    plan = app.lambda_handler({"batch": detail}, context())
    assert (plan["reason"], plan["jobs"], plan["sendGroups"]) == (reason, [], [])
    assert not [line for line in lines(capsys.readouterr().out) if "RoutingAttempts" in line]


def test_the_plan_of_a_batch_at_the_entry_limit_fits_a_state_payload(handler: Any) -> None:
    jobs = [job(n, prompt="x" * 2_500) for n in range(100)]
    detail = {"batchId": "b-4", "jobs": jobs}
    assert batch.entry_bytes(detail) <= batch.MAX_ENTRY_BYTES
    plan = handler().lambda_handler({"batch": detail}, context())
    assert plan["counts"] == {"route": 100}
    assert len(json.dumps(plan).encode()) < 64 * 1024  # the details stay in the execution input, not the plan
