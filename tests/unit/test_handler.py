"""The rules Lambda handler as Lambda runs it: decision out, EMF metric, JSON logs without the prompt."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from types import SimpleNamespace
from typing import Any

import pytest

SENTINEL = "SENTINEL-PROMPT-7f3a do not log me"


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAL_QUEUE_URL", "https://sqs.test/FalJobQueue")
    monkeypatch.setenv("REPLICATE_QUEUE_URL", "https://sqs.test/ReplicateJobQueue")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "VideoJobRouting")
    # A cold start: Powertools marks the named logging.Logger as configured and keeps its handler,
    # bound to an earlier test's stream; a fresh process would have neither.
    logging.Logger.manager.loggerDict.pop("routing-manager", None)
    sys.modules.pop("app", None)
    # Imported in the test body: Powertools binds sys.stdout at import, and capsys's stream
    # is only in place once the test runs.
    return lambda: importlib.import_module("app")


def context() -> Any:
    return SimpleNamespace(function_name="rules", memory_limit_in_mb=256, invoked_function_arn="arn:aws:lambda:x",
                           aws_request_id="req-1", function_version="$LATEST")


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_routes_and_emits_metric_and_log_without_prompt(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    detail = {"jobId": "job-9", "userId": "u", "prompt": SENTINEL, "lengthSec": 8, "resolution": "720p"}
    decision = handler().lambda_handler({"detail": detail, "creditBalance": None}, context())
    assert (decision["outcome"], decision["provider"], decision["queueUrl"]) == (
        "route", "fal", "https://sqs.test/FalJobQueue")
    out = capsys.readouterr().out
    assert SENTINEL not in out
    records = lines(out)
    [metric] = records  # one line per decision: the metric, with the decision's fields as properties
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "VideoJobRouting"
    assert (metric["RoutingAttempts"], metric["provider"], metric["outcome"]) == ([1.0], "fal", "routed")
    assert {k: metric[k] for k in ("jobId", "decision", "rule", "model", "quoteUsd", "priority", "reason")} == {
        "jobId": "job-9", "decision": "route", "rule": "short-720p-to-fal", "model": "wan-i2v", "quoteUsd": 0.64,
        "priority": "normal", "reason": None}
    [dimensions] = metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert {"provider", "outcome"} <= set(dimensions) and "jobId" not in dimensions  # properties cost nothing


def test_rejection_metric_and_bad_input_never_raises(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for event in ({"detail": {"jobId": "j", "userId": "u", "prompt": SENTINEL, "lengthSec": "8"}}, None, [], "x",
                  {"detail": None}, {}):
        decision = handler().lambda_handler(event, context())
        assert decision["outcome"] == "reject"
    out = capsys.readouterr().out
    assert SENTINEL not in out
    metrics = [r for r in lines(out) if "_aws" in r]
    assert {(m["provider"], m["outcome"]) for m in metrics} == {("none", "rejected")}


def test_dry_run_decides_but_counts_no_attempt(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    detail = {"jobId": "canary", "userId": "canary", "prompt": "canary", "lengthSec": 8, "resolution": "720p"}
    assert handler().lambda_handler({"detail": detail, "dryRun": True}, context())["outcome"] == "route"
    records = lines(capsys.readouterr().out)
    assert not any("RoutingAttempts" in r for r in records)  # and at the default INFO level, no line at all


def test_hostile_job_id_is_sanitised_in_logs(handler: Any, capsys: pytest.CaptureFixture[str]) -> None:
    handler().lambda_handler({"detail": {"jobId": "a\nb\"}{<x>", "userId": "u", "prompt": "p"}}, context())
    [metric] = lines(capsys.readouterr().out)
    assert metric["jobId"] == "a?b????x?"
