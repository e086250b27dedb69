"""Batch mode's cost model (issue 26 item 4, docs/COST.md "Batch mode"), on the single job's measured inputs."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from routing_manager import project

sys.path.insert(0, str(project.ROOT / "bench"))
import cost_model  # noqa: E402

# The single routed job's inputs as make bench measured them (docs/COST.md).
MEASURED: dict[str, Any] = {
    "paths": {"ROUTED": {"requests": {"dynamodb": 2, "lambda": 1, "sqs": 1, "events": 1}, "transitions": 8,
                         "history_events": 33}},
    "item_bytes": 821, "claim_bytes": 575, "lambda_log_bytes_per_invocation": 442, "event_bytes": 228}


def test_a_hundred_jobs_a_batch_cost_at_most_three_dollars_per_million() -> None:
    batch = sum(cost_model.batch_cost(MEASURED).values())
    single = sum(cost_model.router_cost(MEASURED, "ERROR").values())
    assert batch <= 3.00
    assert single == pytest.approx(5.40, abs=0.01)


def test_what_stays_per_job_costs_the_same_and_what_is_per_batch_is_shared() -> None:
    batch, single = cost_model.batch_cost(MEASURED), cost_model.router_cost(MEASURED, "ERROR")
    assert batch["DynamoDB writes"] == pytest.approx(single["DynamoDB writes"])  # a claim and a mark per job
    assert batch["CloudWatch Logs (Lambda)"] == pytest.approx(single["CloudWatch Logs (Lambda)"])  # a line each
    assert batch["Step Functions EXPRESS requests"] == pytest.approx(single["Step Functions EXPRESS requests"] / 100)
    assert batch["SQS"] == pytest.approx(single["SQS"] / 10)  # SendMessageBatch of 10 in one 64 KB chunk
    # the outcome events stay one per job: EventBridge bills entries, not PutEvents calls
    assert batch["EventBridge (batch event, outcome events, summary)"] == pytest.approx(1.02)


def test_smaller_batches_cost_more_per_job() -> None:
    totals = [sum(cost_model.batch_cost(MEASURED, jobs=n).values()) for n in (1, 10, 100)]
    assert totals[0] > totals[1] > totals[2]
