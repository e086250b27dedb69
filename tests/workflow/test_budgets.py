"""Daily provider budgets on the local stack: spend never passes the budget, refunds when not enqueued."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.sqs.models import SQSBackend

from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack
from tests.reliability.faults import Fault, error, inject
from tests.support import budgeted, deploy_with_table, job, messages_for, spent_today, submit


@pytest.fixture
def budget_stack(aws: None, tmp_path: Path) -> Iterator[LocalStack]:
    deployed = deploy_with_table(tmp_path, budgeted)
    yield deployed
    local_stack.release(deployed)


def test_under_100_concurrent_jobs_the_spend_never_passes_the_budget(budget_stack: LocalStack) -> None:
    jobs = [job() for _ in range(100)]
    results = submit(budget_stack, *jobs, timeout=180)
    assert {r.status for r in results} == {"ROUTED"}
    fal = [m for j in jobs for m in messages_for(budget_stack, "FalJobQueueUrl", j["jobId"])]
    quotes = [float(m["MessageAttributes"]["quoteUsd"]["StringValue"]) for m in fal]
    assert len(fal) == 7 and sum(quotes) <= 5.0  # the checker: spend counted against what was enqueued
    assert spent_today(budget_stack, "fal") == pytest.approx(sum(quotes))
    spilled = [r for r in results if r.provider == "replicate"]
    assert len(spilled) == 93  # the next candidate of the rule; Replicate has no budget


def test_a_duplicate_gives_its_quote_back(budget_stack: LocalStack) -> None:
    detail = job()
    submit(budget_stack, detail)
    assert spent_today(budget_stack, "fal") == pytest.approx(0.64)
    [again] = submit(budget_stack, detail)
    assert again.path[-3:] == ["RefundBudgetOfDuplicate", "CountDuplicate", "AlreadyHandled"]
    assert spent_today(budget_stack, "fal") == pytest.approx(0.64)


def test_a_failed_enqueue_gives_its_quote_back(budget_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    detail = job()
    fault = Fault(lambda call: "FalJobQueue" in call and detail["jobId"] in call,
                  [error("InvalidParameterValue", "sqs")] * 50)
    with inject(monkeypatch, SQSBackend, "send_message", fault):
        [result] = submit(budget_stack, detail)
    assert result.status == "FAILED" and "RefundBudgetOfFailedEnqueue" in result.path
    assert spent_today(budget_stack, "fal") == 0
