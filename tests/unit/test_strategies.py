"""Strategies (issue 25 item 3): each one's choice and explanation, best-value's exploration cap, the job's
routing.sort latency and quality, and a statistics read that fails loudly."""

from __future__ import annotations

import copy
import json
import logging
import random
from typing import Any

import pytest
from routing_core import stats
from routing_core.availability import Availability
from routing_core.engine import Engine
from routing_core.live import LiveState
from routing_core.table import RoutingTable

from routing_manager import project

SHIPPED = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
QUEUES = {"FAL_QUEUE_URL": "https://sqs/fal", "REPLICATE_QUEUE_URL": "https://sqs/replicate"}
JOB = {"jobId": "j-1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p", "tier": "standard"}
FAL, REPLICATE = ("fal", "wan-i2v"), ("replicate", "minimax/video-01")  # quotes $0.64 and $0.6664


def engine(strategy: str = "order", providers: dict[str, dict[str, Any]] | None = None, **rule: Any) -> Engine:
    table = copy.deepcopy(SHIPPED)
    table["rules"][0].update(strategy=strategy, **rule)
    for name, change in (providers or {}).items():
        table["providers"][name].update(change)
    return Engine(RoutingTable.model_validate(table).model_dump(mode="json"), QUEUES)


def line(samples: int = 0, duration: float | None = None, quality: float | None = None, failures: float = 0,
         in_flight: int = 0) -> dict[str, Any]:
    return {"samples": samples, "durationEwmaSec": duration, "qualityMean": quality,
            "qualityWeight": float(samples - failures) if quality is not None else 0.0, "failureWeight": failures,
            "inFlight": in_flight}


def decide(e: Engine, statistics: dict[tuple[str, str], dict[str, Any]] | None, note: str | None = None,
           **job: Any) -> dict[str, Any]:
    return dict(e.decide({**JOB, **job}, availability=Availability({}, stats=statistics, stats_note=note)))


def step(decision: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in decision["explanation"] if s.get("rule") == "short-720p-to-fal")


def test_order_stays_todays_behaviour_and_reads_no_statistics() -> None:
    d = decide(engine(), {FAL: line(50, duration=90.0), REPLICATE: line(50, duration=20.0)})
    assert d["provider"] == "fal" and "strategy" not in step(d)


def test_fastest_takes_the_lowest_duration_ewma_and_explains_the_figures() -> None:
    d = decide(engine("fastest"), {FAL: line(50, duration=90.0), REPLICATE: line(50, duration=20.0)})
    assert (d["provider"], d["model"]) == REPLICATE
    info = step(d)["strategy"]
    assert info["figure"] == "durationEwmaSec"
    assert info["figures"] == {"fal/wan-i2v": 90.0, "replicate/minimax/video-01": 20.0}
    assert "the lowest durationEwmaSec" in info["ranking"]
    assert "ranked first" in step(d)["why"]
    assert step(d)["candidates"][1]["skipped"] == "not chosen: a candidate ranked higher takes the job"


def test_fastest_tries_a_model_with_no_duration_first_to_learn_it() -> None:
    d = decide(engine("fastest"), {FAL: line(5, duration=20.0)})
    assert d["provider"] == "replicate"
    assert step(d)["strategy"]["figures"]["replicate/minimax/video-01"] is None
    assert step(d)["strategy"]["ranking"] == "unknown first (to learn it), then the lowest durationEwmaSec"


def test_least_busy_takes_a_model_with_no_statistics_as_idle() -> None:
    d = decide(engine("least-busy"), {FAL: line(in_flight=1)})
    assert d["provider"] == "replicate" and step(d)["strategy"]["figures"]["replicate/minimax/video-01"] == 0.0


def test_least_busy_divides_in_flight_by_max_in_flight() -> None:
    statistics = {FAL: line(in_flight=8), REPLICATE: line(in_flight=3)}
    assert decide(engine("least-busy"), statistics)["provider"] == "replicate"  # no maxInFlight: 8 against 3
    limited = engine("least-busy", {"fal": {"rateLimits": {"maxInFlight": 10}},
                                    "replicate": {"modelRateLimits": {"minimax/video-01": {"maxInFlight": 2}}}})
    d = decide(limited, statistics)
    assert d["provider"] == "fal"
    assert step(d)["strategy"]["figures"] == {"fal/wan-i2v": 0.8, "replicate/minimax/video-01": 1.5}
    assert step(d)["strategy"]["figure"] == "inFlight/maxInFlight"


def test_max_in_flight_alone_is_a_valid_rate_limit_and_takes_no_counter() -> None:
    e = engine("least-busy", {"fal": {"rateLimits": {"maxInFlight": 10}}})
    assert e.rate_limits == {} and e.max_in_flight == {("fal", ""): 10}
    table = copy.deepcopy(SHIPPED)
    table["providers"]["fal"]["rateLimits"] = {}
    with pytest.raises(ValueError, match="give maxJobsPerMinute, maxInFlight or both"):
        RoutingTable.model_validate(table)


def test_best_value_takes_the_best_quality_per_dollar_and_explains_the_draws() -> None:
    e = engine("best-value", maxExploration=0)
    d = decide(e, {FAL: line(400, quality=0.8), REPLICATE: line(400, quality=0.6)})
    assert d["provider"] == "fal"
    info = step(d)["strategy"]
    assert info["strategy"] == "best-value" and set(info["draws"]) == {"fal/wan-i2v", "replicate/minimax/video-01"}
    assert info["posteriorMeans"]["fal/wan-i2v"] == pytest.approx((1 + 320) / 402, abs=1e-4)
    assert "sampled quality per dollar" in info["ranking"] or "posterior means" in info["ranking"]


def test_failures_count_as_quality_zero_in_best_value() -> None:
    # fal's completed jobs are better, but half of its jobs fail.
    d = decide(engine("best-value", maxExploration=0),
               {FAL: line(400, quality=0.9, failures=200), REPLICATE: line(400, quality=0.7)})
    assert d["provider"] == "replicate"


def test_min_quality_puts_a_cheap_poor_model_after_a_good_one() -> None:
    statistics = {FAL: line(400, quality=0.6), REPLICATE: line(400, quality=0.61)}
    assert decide(engine("best-value", maxExploration=0), statistics)["provider"] == "fal"  # more quality per $
    d = decide(engine("best-value", maxExploration=0, minQuality=0.605), statistics)
    assert d["provider"] == "replicate" and step(d)["strategy"]["minQuality"] == 0.605


def test_the_exploration_cap_bounds_the_share_of_jobs_not_given_to_the_posterior_best() -> None:
    # fal is known and good; replicate is new (Beta(1, 1)): its draws often win, the cap holds them back.
    statistics = {FAL: line(200, quality=0.6), REPLICATE: line()}
    for cap in (0.0, 0.2):
        e = engine("best-value", maxExploration=cap)
        strategy = e.rules[0][3]
        strategy.rng = random.Random(7)
        picks = [decide(e, statistics, jobId=f"j-{i}")["provider"] for i in range(1000)]
        explored = picks.count("replicate")
        assert explored <= cap * 1000 + 1
        assert strategy.explored == explored
    assert explored > 100  # with room to explore, the new model is tried


def test_an_uncapped_new_model_is_explored_by_its_wide_posterior() -> None:
    e = engine("best-value", maxExploration=1)
    e.rules[0][3].rng = random.Random(3)
    picks = {decide(e, {FAL: line(200, quality=0.6), REPLICATE: line()}, jobId=f"j-{i}")["provider"]
             for i in range(200)}
    assert picks == {"fal", "replicate"}


def test_no_statistics_keeps_the_rules_order_and_says_so() -> None:
    d = decide(engine("fastest"), None, note="statistics unread (ConnectionError): no statistics")
    assert d["provider"] == "fal"
    info = step(d)["strategy"]
    assert info["ranking"] == "no statistics read: the rule's order"
    assert info["statsNote"] == "statistics unread (ConnectionError): no statistics"


def test_the_jobs_sort_latency_and_quality_rank_by_the_statistics() -> None:
    statistics = {FAL: line(400, duration=90.0, quality=0.3), REPLICATE: line(400, duration=20.0, quality=0.95)}
    e = engine()
    d = decide(e, statistics, routing={"sort": "latency"})
    assert d["provider"] == "replicate" and step(d)["sort"]["figure"] == "durationEwmaSec"
    assert "sort" in step(d)["filters"]
    e.sort_strategies["quality"].max_exploration = 0
    d = decide(e, statistics, routing={"sort": "quality"})
    assert d["provider"] == "replicate" and step(d)["sort"]["strategy"] == "best-value"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Table:
    """Provider state reads; the statistics' Query fails while `stats_down`."""

    def __init__(self) -> None:
        self.stats_down = False
        self.stats_items: list[dict[str, Any]] = []

    def query(self, **request: Any) -> dict[str, Any]:
        if request["ExpressionAttributeValues"][":pk"]["S"] == "stats":
            if self.stats_down:
                raise ConnectionError("no route to the table")
            return {"Items": self.stats_items}
        return {"Items": []}


def test_live_state_reads_the_statistics_of_the_last_three_hours_with_the_provider_state() -> None:
    clock, table = Clock(), Table()
    now = 1_800_000_000.0
    bucket = stats.bucket_of(now)
    table.stats_items = [{"pk": {"S": "stats"}, "sk": {"S": f"{bucket:010d}#replicate#minimax/video-01"},
                          "durationCount": {"N": "4"}, "durationSum": {"N": "40"}, "durationSqSum": {"N": "400"},
                          "samples": {"N": "4"}, "successes": {"N": "4"}},
                         {"pk": {"S": "stats"}, "sk": {"S": f"{bucket:010d}#fal#wan-i2v"},
                          "durationCount": {"N": "1"}, "durationSum": {"N": "50"}, "durationSqSum": {"N": "2500"}}]
    state = LiveState("t", client=table, clock=clock, read_stats=True, wall_clock=lambda: now)
    availability = state.availability()
    assert availability.stats is not None and availability.stats[REPLICATE]["durationEwmaSec"] == 10.0
    assert availability.stats_note is None and state.read_errors == 0
    d = dict(engine("fastest").decide(JOB, availability=availability))
    assert d["provider"] == "replicate"


def test_a_failed_statistics_read_is_counted_logged_and_explained(caplog: pytest.LogCaptureFixture) -> None:
    clock, table = Clock(), Table()
    table.stats_down = True
    state = LiveState("ProviderState-prod", client=table, clock=clock, read_stats=True)
    with caplog.at_level(logging.ERROR, logger="routing_core.live"):
        availability = state.availability()
    assert state.take_read_errors() == 1  # the ControlStateReadErrors metric
    assert state.freshness()["liveState"] == "fresh"  # the provider state itself was read
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["live statistics in ProviderState-prod not read (ConnectionError): strategies rank with "
                      "statistics unread (ConnectionError): no statistics"]
    d = dict(engine("best-value").decide(JOB, availability=availability))
    assert step(d)["strategy"]["statsNote"] == "statistics unread (ConnectionError): no statistics"
    # Read once, then failing: the last statistics are kept and said to be stale.
    table.stats_down = False
    clock.now += 2
    assert state.availability().stats_note is None
    table.stats_down = True
    clock.now += 5
    availability = state.availability()
    assert availability.stats == {} and availability.stats_note == \
        "statistics stale (ConnectionError): last read 5.0 s ago"
