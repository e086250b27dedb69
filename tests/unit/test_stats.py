"""routing_core.stats: what the buckets' sums say (decay, in-flight horizon, p90), and what an outcome adds."""

from __future__ import annotations

from typing import Any

import pytest
from routing_core import stats
from routing_core.stats import BUCKET_SEC, HALF_LIFE_SEC, IN_FLIGHT_HORIZON_SEC, outcome_adds, summarise

NOW = 1_800_000_000.0


def item(age: float, provider: str = "fal", model: str = "wan-i2v", **sums: float) -> dict[str, Any]:
    bucket = stats.bucket_of(NOW - age)
    return {"pk": {"S": "stats"}, "sk": {"S": f"{bucket:010d}#{provider}#{model}"},
            **{name: {"N": repr(float(v))} for name, v in sums.items()}}


def test_a_known_model_with_no_outcome_is_listed_empty() -> None:
    [line] = summarise([], NOW, [("fal", "wan-i2v")])
    assert line == {"provider": "fal", "model": "wan-i2v", "samples": 0, "successRate": None, "durationEwmaSec": None,
                    "durationP90Sec": None, "qualityMean": None, "qualityStdDev": None, "qualitySamples": 0,
                    "costRatio": None, "inFlight": 0, "routed": 0, "qualityWeight": 0.0,
                    "failureWeight": 0.0, "lastOutcomeAt": None}


def test_older_buckets_weigh_less_by_the_half_life() -> None:
    # 10 s jobs an hour and a bit ago, 40 s jobs now: the mean leans towards now by the half-life.
    old = item(HALF_LIFE_SEC + BUCKET_SEC / 2, durationCount=10, durationSum=100, durationSqSum=1000,
               samples=10, successes=10)
    new = item(0, durationCount=10, durationSum=400, durationSqSum=16000, samples=10, successes=0)
    [line] = summarise([old, new], NOW)
    w_old = 0.5 ** ((NOW - stats.bucket_of(NOW - HALF_LIFE_SEC - BUCKET_SEC / 2) - BUCKET_SEC / 2) / HALF_LIFE_SEC)
    w_new = 0.5 ** (max(0.0, NOW - stats.bucket_of(NOW) - BUCKET_SEC / 2) / HALF_LIFE_SEC)
    assert line["durationEwmaSec"] == pytest.approx((100 * w_old + 400 * w_new) / (10 * w_old + 10 * w_new), abs=1e-3)
    assert 25 < line["durationEwmaSec"] < 40
    assert line["samples"] == 20  # counts are not decayed
    assert line["successRate"] == pytest.approx(10 * w_old / (10 * w_old + 10 * w_new), abs=1e-4)


def test_p90_is_mean_plus_1_28_deviations() -> None:
    [line] = summarise([item(0, durationCount=2, durationSum=60, durationSqSum=20**2 + 40**2)], NOW)
    assert line["durationEwmaSec"] == 30 and line["durationP90Sec"] == round(30 + 1.2816 * 10, 3)


def test_in_flight_forgets_jobs_routed_before_the_horizon() -> None:
    lost = item(IN_FLIGHT_HORIZON_SEC + 2 * BUCKET_SEC, routed=5)  # their outcomes never came
    recent = item(60, routed=3, finished=1)
    [line] = summarise([lost, recent], NOW)
    assert (line["inFlight"], line["routed"]) == (2, 8)


def test_in_flight_is_never_negative() -> None:
    # Outcomes of jobs routed before the horizon finish inside it.
    [line] = summarise([item(60, finished=4)], NOW)
    assert line["inFlight"] == 0


def test_cost_ratio_is_mean_charged_over_mean_quoted() -> None:
    [line] = summarise([item(0, costCount=2, costSum=1.0, quoteCount=4, quoteSum=4.0)], NOW)
    assert line["costRatio"] == 0.5


def test_what_an_outcome_adds() -> None:
    assert outcome_adds(counted=False, completed=False, duration=3) == {"finished": 1}
    assert outcome_adds(counted=True, completed=False, duration=3, quality=0.9, cost=1) == {
        "finished": 1, "samples": 1, "successes": 0, "durationCount": 1, "durationSum": 3, "durationSqSum": 9}
    assert outcome_adds(counted=True, completed=True, quality=0.5, cost=0.25) == {
        "finished": 1, "samples": 1, "successes": 1, "qualityCount": 1, "qualitySum": 0.5, "qualitySqSum": 0.25,
        "costCount": 1, "costSum": 0.25}
