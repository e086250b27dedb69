"""The cost model's arithmetic (docs/COST.md), on fixed inputs: the measured ones come from
the local stack in `make bench`."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from routing_manager import project

sys.path.insert(0, str(project.ROOT / "bench"))
import cost_model  # noqa: E402


def measured(item_bytes: int, claim_bytes: int = 800) -> dict[str, Any]:
    return {"paths": {"ROUTED": {"requests": {"dynamodb": 2, "lambda": 1, "sqs": 1, "events": 1},
                                 "transitions": 9, "history_events": 35}},
            "item_bytes": item_bytes, "claim_bytes": claim_bytes,
            "lambda_log_bytes_per_invocation": 850, "event_bytes": 228}


def test_the_mark_bills_the_item_size_in_whole_kilobytes() -> None:
    under, over = (cost_model.router_cost(measured(size), "ERROR")["DynamoDB writes"] for size in (1000, 1063))
    assert under == pytest.approx(2 * 0.625)
    assert over == pytest.approx(3 * 0.625)


def test_only_log_level_all_writes_the_workflow_history() -> None:
    m = measured(1063)
    totals = {level: sum(cost_model.router_cost(m, level).values()) for level in cost_model.LOG_LEVELS}
    assert totals["OFF"] == totals["FATAL"] == totals["ERROR"]
    assert totals["ALL"] - totals["ERROR"] == pytest.approx(35 * 350 / 1e9 * 0.50 * 1e6)


def test_both_designs_pay_the_same_events_writes_and_send() -> None:
    m = measured(1063)
    router, single = cost_model.router_cost(m, "ERROR"), cost_model.single_lambda_cost(m)
    for service in ("EventBridge (submitted + outcome event)", "DynamoDB writes", "SQS"):
        assert router[service] == pytest.approx(single[service])
    assert "Step Functions EXPRESS requests" not in single


@pytest.mark.local_stack
def test_measure_counts_what_a_routed_a_rejected_and_a_duplicate_job_cost_on_the_local_stack() -> None:
    """`make bench` measures the inputs on the local stack; its Lambda log bytes are the rules function's lines
    as its own process prints them (they once came from this process's stdout, and measured none)."""
    m = cost_model.measure()
    assert {"ROUTED", "REJECTED", "DUPLICATE"} <= set(m["paths"])
    assert m["paths"]["ROUTED"]["requests"]["sqs"] == 1
    assert 100 < m["lambda_log_bytes_per_invocation"] < 4000  # one EMF line per decision
    assert m["claim_bytes"] < m["item_bytes"]


def test_item_size_follows_dynamodbs_documented_rules() -> None:
    # "DynamoDB item sizes and formats": name bytes + value; numbers 1 byte per 2 significant digits + 1.
    assert cost_model.item_size({"jobId": {"S": "abc"}}) == 5 + 3
    assert cost_model.item_size({"q": {"N": "0.6400"}}) == 1 + 2  # "64": leading and trailing zeroes trimmed
    assert cost_model.item_size({"n": {"N": "12345"}}) == 1 + 4
    assert cost_model.item_size({"shadow": {"NULL": True}, "ok": {"BOOL": False}}) == 7 + 3
    assert cost_model.item_size({"executions": {"L": [{"S": "ab"}, {"S": "c"}]}}) == 10 + 3 + (1 + 2) + (1 + 1)
    assert cost_model.item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    with pytest.raises(ValueError, match="SS"):
        cost_model.item_size({"tags": {"SS": ["a"]}})
