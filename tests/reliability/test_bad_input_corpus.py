"""More than 200 malformed or hostile submissions through the real workflow: each gets its
expected outcome, and none crashes an execution."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from routing_core.reasons import MAX_DETAIL_BYTES, MAX_DETAIL_DEPTH, MAX_JOB_ID_BYTES

from routing_manager.local.stack import LocalStack
from tests.support import job, submit

ROUTE, FAL, REPLICATE = "ROUTED", "fal", "replicate"
JUNK = [None, "", "   ", 0, -1, 1.5, True, False, [], ["x"], {}, {"a": {"b": [1, {"c": None}]}}]
HOSTILE = ["'; DROP TABLE jobs;--", "<script>alert(1)</script>", "$(rm -rf /)", "${jndi:ldap://x/a}",
           "../../etc/passwd", "a\nb\r\nc", "\u0000\u0001\u001f", "\u202eevil", "🦊🦊", "Ω≈ç√", "%s%s%n",
           "{\"json\": true}", "\\\\", "x" * 1000]


def _cases() -> list[tuple[str, dict[str, Any], str, str | None]]:
    cases: list[tuple[str, dict[str, Any], str, str | None]] = []
    for field in ("jobId", "userId", "prompt"):
        for i, value in enumerate([..., *JUNK]):
            if isinstance(value, str) and value.strip():
                continue  # a non-blank string is valid
            cases.append((f"{field}-{i}", job(**{field: value}), "REJECTED", f"missing_required_field:{field}"))
    for i, value in enumerate(["8", "abc", "", True, False, [], {}, [8], {"s": 8}, "NaN", "1e3"]):
        cases.append((f"length-type-{i}", job(lengthSec=value), "REJECTED", "invalid_length:not_a_number"))
    for i, value in enumerate([0, -1, -0.0, 0.999, 300.0001, 301, 1e9, -1e9, 1e308, -1e308, 10**30]):
        cases.append((f"length-range-{i}", job(lengthSec=value), "REJECTED", "invalid_length:must_be_1-300_seconds"))
    for i, value in enumerate([1, 1.0, 10, 9.999, 5]):
        cases.append((f"length-ok-{i}", job(lengthSec=value), ROUTE, None))
    for i, value in enumerate([10.0001, 11, 300, 150.5]):
        cases.append((f"length-long-{i}", job(lengthSec=value), "REJECTED", "no_route"))
    from routing_core.engine import echo

    for i, value in enumerate([*HOSTILE, "veo", "runway", "fal ai", 7, 0.5, [], ["fal"], {"p": "fal"}, True]):
        cases.append((f"provider-{i}", job(provider=value), "REJECTED", f"unsupported_provider:{echo(value)}"))
    for i, value in enumerate(["FAL", "Fal", " fal ", "REPLICATE", "replicate", "AUTO", "auto", "", None]):
        cases.append((f"provider-ok-{i}", job(provider=value), ROUTE, None))
    for i, value in enumerate(HOSTILE):
        job_id = f"{value}-{uuid.uuid4().hex[:6]}"
        too_long = len(job_id.encode()) > MAX_JOB_ID_BYTES
        cases.append((f"job-id-{i}", job(jobId=job_id), "REJECTED" if too_long else ROUTE,
                      "invalid_job_id:too_long" if too_long else None))
        cases.append((f"prompt-{i}", job(prompt=value), ROUTE, None))
        cases.append((f"user-{i}", job(userId=value), ROUTE, None))
    for i, value in enumerate([*JUNK, *HOSTILE[:5]]):
        cases.append((f"resolution-{i}", job(resolution=value), "REJECTED", "no_route"))
        cases.append((f"tier-{i}", job(tier=value), ROUTE, None))
        cases.append((f"feature-{i}", job(feature=value), ROUTE, None))
    for i, value in enumerate([1, 10.01, 299.9, 300]):  # explicit provider: respected whatever the rules say
        cases.append((f"explicit-length-{i}", job(provider="replicate", lengthSec=value, resolution="1080p"),
                      ROUTE, None))
    for i, value in enumerate([0, 300.5]):  # validation still comes first
        cases.append((f"explicit-bad-length-{i}", job(provider="fal", lengthSec=value), "REJECTED",
                      "invalid_length:must_be_1-300_seconds"))
    # fal cannot do audio: the rule's next candidate, Replicate, takes it.
    cases.append(("audio-true", job(feature={"audio": True}), ROUTE, None))
    cases.append(("audio-junk", job(feature={"audio": "yes"}), ROUTE, None))
    cases.append(("nested-junk", job(extra={"deep": [[[[{"x": [None] * 50}]]]]}, tags=list(range(100))), ROUTE, None))
    # The contract's limits (docs/EVENT_SCHEMA.md), at and over the edge; far above them, up to what
    # EventBridge accepts, in tests/reliability/test_aws_limits.py.
    at_limit = job(prompt="")
    at_limit["prompt"] = "x" * (MAX_DETAIL_BYTES - len(json.dumps(at_limit, separators=(",", ":"))))
    cases.append(("detail-at-limit", at_limit, ROUTE, None))
    cases.append(("detail-over-limit", {**at_limit, "jobId": at_limit["jobId"][:-1] + "X",
                                                   "prompt": at_limit["prompt"] + "x"}, "REJECTED", "job_too_large"))
    cases.append(("prompt-200kb", job(prompt="A corgi surfing. " * 12_000), "REJECTED", "job_too_large"))
    cases.append(("job-id-at-limit", job(jobId="é" * (MAX_JOB_ID_BYTES // 2)), ROUTE, None))
    deep: Any = "leaf"
    for _ in range(MAX_DETAIL_DEPTH - 1):
        deep = [deep]
    cases.append(("depth-at-limit", job(extra=deep), ROUTE, None))  # the detail is level 1
    cases.append(("depth-over-limit", job(extra=[deep]), "REJECTED", "job_too_deep"))
    cases.append(("lone-surrogate-in-prompt", job(prompt="a\ud800b"), "REJECTED", "invalid_encoding"))
    return cases


CASES = _cases()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 200


@pytest.fixture(scope="module")
def outcomes(stack: LocalStack) -> dict[str, Any]:
    # All at once, as a frontend may send them: the local stack runs a bounded number of executions at a
    # time (bound_running_executions), so a burst no longer starves DecideRoute past its 10 s.
    details = [detail for _, detail, _, _ in CASES]
    results = submit(stack, *details, timeout=240)
    assert len(results) == len(CASES)
    return {"results": results}


def test_every_submission_gets_its_outcome(stack: LocalStack, outcomes: dict[str, Any]) -> None:
    results = outcomes["results"]
    crashed = [r for r in results if r.status not in ("ROUTED", "REJECTED")]
    assert not crashed, [(r.jobId, r.status, r.reason) for r in crashed[:5]]
    # Match results to cases by jobId where there is one; missing-jobId cases are told apart by prompt.
    by_job = {r.jobId: r for r in results if isinstance(r.jobId, str) and r.jobId.strip()}
    wrong = []
    for name, detail, status, reason in CASES:
        job_id = detail.get("jobId")
        if not (isinstance(job_id, str) and job_id.strip()):
            continue
        result = by_job[job_id]
        if (result.status, result.reason) != (status, reason):
            wrong.append((name, result.status, result.reason, status, reason))
    assert not wrong, wrong[:10]
    missing_id = [r for r in results if not (isinstance(r.jobId, str) and r.jobId.strip())]
    expected_missing = sum(1 for _, d, _, _ in CASES if not (isinstance(d.get("jobId"), str) and d["jobId"].strip()))
    assert len(missing_id) == expected_missing
    assert all(r.reason == "missing_required_field:jobId" for r in missing_id)
