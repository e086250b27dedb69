"""A strategy's choice moves with the live statistics on the local stack (issue 25 item 3): outcomes put on the
bus become statistics through the provider events function, the rules function reads them in its cached
read, and a `fastest` rule routes to the model they say is faster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack
from tests.support import deploy_with_table, job, submit
from tests.workflow.test_provider_stats import eventually, outcome, stats

MAX_JOBS = 40  # jobs submitted, one at a time, until the rules function's cached read takes the new figures


@pytest.fixture
def fastest(aws: None, tmp_path: Path) -> Iterator[LocalStack]:
    def change(table: dict[str, Any]) -> None:
        table["rules"][0]["strategy"] = "fastest"
    deployed = deploy_with_table(tmp_path, change)
    yield deployed
    local_stack.release(deployed)


def publish(stack: LocalStack, provider: str, model: str, duration: float, count: int) -> None:
    for _ in range(count):
        outcome(stack, "completed", provider=provider, model=model, durationSec=duration)


def route_until(stack: LocalStack, provider: str) -> list[str | None]:
    """Jobs one after the other until one routes to `provider`: each is a decision the stack records, so
    this waits on decisions, not on the clock (the rules function re-reads its state at most every 2 s)."""
    seen: list[str | None] = []
    for _ in range(MAX_JOBS):
        [result] = submit(stack, job(), timeout=60)
        assert result.status == "ROUTED", result
        seen.append(result.provider)
        if result.provider == provider:
            return seen
    raise AssertionError(f"no job routed to {provider} in {MAX_JOBS}: {seen}")


def test_outcomes_over_the_stack_change_the_statistics_and_move_a_fastest_rules_choice(
        fastest: LocalStack) -> None:
    stack = fastest
    fal, replicate = ("fal", "wan-i2v"), ("replicate", "minimax/video-01")
    # Replicate reports 10 s jobs, fal 120 s ones: fastest routes to replicate, though fal is first in the rule.
    publish(stack, *replicate, 10.0, 3)
    publish(stack, *fal, 120.0, 3)
    eventually(lambda: stats(stack)[fal]["samples"] == 3 and stats(stack)[replicate]["samples"] == 3,
               "the six outcomes to become statistics")
    assert (stats(stack)[fal]["durationEwmaSec"], stats(stack)[replicate]["durationEwmaSec"]) == (120.0, 10.0)
    route_until(stack, "replicate")
    # Then fal turns fast and replicate slow: the statistics move, and the choice follows them.
    publish(stack, *fal, 1.0, 30)
    publish(stack, *replicate, 500.0, 30)
    lines = eventually(lambda: (s := stats(stack))[fal]["samples"] == 33 and s[replicate]["samples"] == 33 and s,
                       "the sixty outcomes to become statistics")
    assert lines[fal]["durationEwmaSec"] < lines[replicate]["durationEwmaSec"]
    seen = route_until(stack, "fal")
    # Only jobs decided on figures read before the outcomes landed (at most a cache's worth) went elsewhere.
    assert set(seen[:-1]) <= {"replicate"}, seen
