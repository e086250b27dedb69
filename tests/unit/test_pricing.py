"""Quotes, strategies, tier limits and credits as the engine decides them, boundaries included."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from routing_core.engine import Engine
from routing_core.loading import DEFAULT_TABLE, load_table
from routing_core.table import RoutingTableError, validate_table

URLS = {"FAL_QUEUE_URL": "https://sqs.test/fal", "REPLICATE_QUEUE_URL": "https://sqs.test/replicate"}
JOB = {"jobId": "job-1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p", "tier": "standard"}
SHIPPED = load_table(DEFAULT_TABLE)


def engine(change: Any = None) -> Engine:
    table = copy.deepcopy(SHIPPED)
    if change:
        change(table)
    return Engine(validate_table(table), URLS)


def cheapest_first(table: dict[str, Any]) -> None:
    """fal made the dearer one, so that the cheapest strategy has something to choose."""
    table["providers"]["fal"]["prices"]["wan-i2v"]["perSecondUsd"]["720p"] = 0.2
    table["rules"][0]["strategy"] = "cheapest"


def test_the_quote_is_per_second_at_the_resolution_with_a_minimum() -> None:
    e = engine()
    assert e.quote("fal", "wan-i2v", 8, "720p", None) == 0.64
    assert e.quote("fal", "wan-i2v", 8, "480p", None) == 0.32
    assert e.quote("fal", "wan-i2v", 1, "480p", None) == 0.2  # the minimum charge
    assert e.quote("fal", "wan-i2v", 8, "4k", None) == 0.64  # unlisted: the highest listed price
    assert e.quote("fal", "wan-i2v", None, "720p", None) == 0.4  # no length: 5 s


def test_audio_adds_its_surcharge() -> None:
    e = engine(lambda t: t["providers"]["replicate"]["prices"]["minimax/video-01"].update(audioPerSecondUsd=0.01))
    assert e.quote("replicate", "minimax/video-01", 10, "720p", True) == pytest.approx(0.933)
    assert e.quote("replicate", "minimax/video-01", 10, "720p", False) == pytest.approx(0.833)


def test_the_decision_carries_the_quote_and_the_tiers_priority() -> None:
    d = engine().decide(JOB)
    assert (d["provider"], d["quoteUsd"], d["quoteUsdText"], d["priority"]) == ("fal", 0.64, "0.6400", "normal")
    assert engine().decide({**JOB, "tier": "premium"})["priority"] == "high"
    assert engine().decide({**JOB, "tier": None})["priority"] == "normal"  # no tier: standard
    rejected = engine().decide({**JOB, "lengthSec": 60, "resolution": "1080p"})
    assert (rejected["quoteUsd"], rejected["priority"]) == (None, None)


def test_order_takes_the_first_candidate_and_cheapest_the_lowest_quote() -> None:
    assert engine(lambda t: t["providers"]["fal"]["prices"]["wan-i2v"]["perSecondUsd"].update({"720p": 0.2})
                  ).decide(JOB)["provider"] == "fal"  # order: the first, whatever it costs
    d = engine(cheapest_first).decide(JOB)
    assert (d["provider"], d["quoteUsd"]) == ("replicate", 0.6664)
    candidates = d["explanation"][-1]["candidates"]
    assert [(c["provider"], c["quoteUsd"], c["skipped"]) for c in candidates] == [
        ("replicate", 0.6664, None), ("fal", 1.6, "not chosen: a cheaper candidate takes the job")]
    assert d["explanation"][-1]["why"] == "routes to replicate/minimax/video-01 at $0.6664 (the cheapest)"


def test_cheapest_skips_what_cannot_take_the_job() -> None:
    d = engine(cheapest_first).decide({**JOB, "feature": {"audio": True}, "lengthSec": 4})
    assert d["provider"] == "replicate"
    d = engine(lambda t: (cheapest_first(t), t["providers"]["replicate"].update(enabled=False))).decide(JOB)
    assert d["provider"] == "fal"
    assert d["explanation"][-1]["candidates"][0]["skipped"] == "disabled in the routing table"


@pytest.mark.parametrize(("limit", "outcome"), [(0.64, "fal"), (0.6399, None)])
def test_a_tier_limit_is_inclusive(limit: float, outcome: str | None) -> None:
    d = engine(lambda t: (t["tiers"]["standard"].update(maxQuoteUsd=limit),
                          t["rules"][0].update(route=t["rules"][0]["route"][:1]))).decide(JOB)
    assert d["provider"] == outcome
    if outcome is None:
        assert d["reason"] == "over_tier_limit"
        assert d["explanation"][-1]["candidates"][0]["skipped"] == (
            f"over the standard tier's limit: quote $0.64 > ${limit:g}")


def test_over_the_limit_cheapest_falls_to_a_cheaper_candidate_and_order_does_not() -> None:
    def limited(strategy: str) -> Any:
        def change(t: dict[str, Any]) -> None:
            t["providers"]["fal"]["prices"]["wan-i2v"]["perSecondUsd"]["720p"] = 0.2
            t["tiers"]["standard"]["maxQuoteUsd"] = 1.0
            t["rules"][0]["strategy"] = strategy
        return change

    assert engine(limited("cheapest")).decide(JOB)["provider"] == "replicate"
    d = engine(limited("order")).decide(JOB)
    assert (d["outcome"], d["reason"]) == ("reject", "over_tier_limit")
    # The premium tier has no limit.
    assert engine(limited("order")).decide({**JOB, "tier": "premium"})["provider"] == "fal"
    # An explicit provider over the limit is not sent elsewhere.
    explicit = engine(limited("order")).decide({**JOB, "provider": "fal"})
    assert explicit["reason"] == "over_tier_limit"


def with_credits(table: dict[str, Any]) -> None:
    table["credits"] = {"creditsPerUsd": 100, "exemptTiers": ["premium"]}


@pytest.mark.parametrize(("balance", "outcome"), [(64, "route"), (63.99, "reject"), ("64", "route"), (None, "route")])
def test_a_quote_over_the_balance_is_insufficient_credits(balance: Any, outcome: str) -> None:
    d = engine(with_credits).decide(JOB, balance)
    assert d["outcome"] == outcome
    if outcome == "reject":
        assert d["reason"] == "insufficient_credits"
        assert d["explanation"][-1]["why"] == "fal/wan-i2v quotes $0.64 = 64 credits, over the balance of 63.99"


def test_exempt_tiers_and_tables_without_credits_never_refuse() -> None:
    assert engine(with_credits).decide({**JOB, "tier": "premium"}, 0)["outcome"] == "route"
    assert engine().decide(JOB, 0)["outcome"] == "route"
    assert engine(with_credits).uses_credits and not engine().uses_credits


def test_the_catalog_is_validated() -> None:
    def broken(change: Any) -> str:
        table = copy.deepcopy(SHIPPED)
        change(table)
        with pytest.raises(RoutingTableError) as raised:
            validate_table(table)
        return str(raised.value)

    assert "route[1] routes to replicate/minimax/video-01, which has no price" in broken(
        lambda t: t["providers"]["replicate"]["prices"].clear() or t["providers"]["replicate"].update(
            defaultModel="minimax/video-01"))
    assert "defaultModel 'wan-i2v' has no price (an explicit request routes to it)" in broken(
        lambda t: (t["providers"]["fal"].update(prices={"other": t["providers"]["fal"]["prices"]["wan-i2v"]}),
                   t["rules"][0].update(route=[{"provider": "replicate"}])))
    assert "perSecondUsd['720p'] must be > 0" in broken(
        lambda t: t["providers"]["fal"]["prices"]["wan-i2v"]["perSecondUsd"].update({"720p": 0}))
    assert "strategy: Input should be 'order', 'cheapest', 'fastest', 'least-busy' or 'best-value'" in broken(
        lambda t: t["rules"][0].update(strategy="best"))


prices = st.floats(min_value=0.001, max_value=5, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(Engine(SHIPPED, URLS).prices)), st.floats(min_value=1, max_value=299),
       st.floats(min_value=0.01, max_value=1), st.sampled_from(["480p", "720p", "1080p", "4k", None]),
       st.booleans())
def test_a_quote_is_never_negative_and_grows_with_length(model: tuple[str, str], length: float, more: float,
                                                         resolution: str | None, audio: bool) -> None:
    e = Engine(SHIPPED, URLS)
    shorter = e.quote(*model, length, resolution, audio)
    assert shorter >= 0
    assert e.quote(*model, length + more, resolution, audio) >= shorter


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(Engine(SHIPPED, URLS).prices)), st.floats(min_value=1, max_value=300))
def test_a_quote_grows_with_resolution(model: tuple[str, str], length: float) -> None:
    """Every model in the catalog lists dearer prices for higher resolutions."""
    e = Engine(SHIPPED, URLS)
    listed = [r for r in ("480p", "720p", "1080p") if r in e.prices[model][0]]
    quotes = [e.quote(*model, length, r, False) for r in listed]
    assert quotes == sorted(quotes)


def test_a_provider_may_have_a_queue_per_priority() -> None:
    def urgent_queue(t: dict[str, Any]) -> None:
        t["tiers"]["premium"]["priority"] = "urgent"
        del t["providers"]["fal"]["regions"]  # a provider region has one queue: priority queues are per provider
        t["providers"]["fal"]["priorityQueues"] = {"urgent": {"queue": "FalUrgentQueue",
                                                              "queueUrlEnv": "FAL_URGENT_QUEUE_URL"}}

    table = copy.deepcopy(SHIPPED)
    urgent_queue(table)
    e = Engine(validate_table(table), {**URLS, "FAL_URGENT_QUEUE_URL": "https://sqs.test/fal-urgent"})
    urgent = e.decide({**JOB, "tier": "premium"})
    assert (urgent["queue"], urgent["queueUrl"], urgent["priority"]) == (
        "FalUrgentQueue", "https://sqs.test/fal-urgent", "urgent")
    normal = e.decide(JOB)
    assert (normal["queue"], normal["queueUrl"]) == ("FalJobQueue", "https://sqs.test/fal")
    # Named in the table, not deployed: a configuration error, as for the provider's own queue.
    assert engine(urgent_queue).decide({**JOB, "tier": "premium"})["reason"] == "queue_not_configured:fal"
