"""A job's own routing preferences: each filter, each rejection, the explanation, splits and the contract."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from routing_core.availability import Availability
from routing_core.contract import SubmittedJob
from routing_core.engine import Engine, split_bucket
from routing_core.loading import DEFAULT_TABLE, load_table
from routing_core.table import RoutingTableError, validate_table

URLS = {"FAL_QUEUE_URL": "https://sqs.test/Fal", "REPLICATE_QUEUE_URL": "https://sqs.test/Replicate",
        "VEO_QUEUE_URL": "https://sqs.test/Veo", "FAL_EU_QUEUE_URL": "https://sqs.test/FalEu"}
BASE = {"jobId": "job-1", "userId": "user-123", "prompt": "A corgi surfing", "lengthSec": 8, "resolution": "720p"}


def richer_table(regions: bool = False) -> dict[str, Any]:
    """The shipped table plus a third provider, a second fal model, a weighted split and a metadata rule (and, with
    `regions`, fal in two regions)."""
    table = json.loads(DEFAULT_TABLE.read_text())
    if regions:
        table["providers"]["fal"]["regions"] = {
            "us-east-1": {"queue": "FalJobQueue", "queueUrlEnv": "FAL_QUEUE_URL", "failoverOrder": 1},
            "eu-west-1": {"queue": "FalEuJobQueue", "queueUrlEnv": "FAL_EU_QUEUE_URL", "failoverOrder": 2}}
    table["providers"]["fal"]["prices"]["wan-pro"] = {"perSecondUsd": {"720p": 0.2}, "source": "test"}
    table["providers"]["veo"] = {
        "queue": "VeoJobQueue", "queueUrlEnv": "VEO_QUEUE_URL", "defaultModel": "veo-3",
        "prices": {"veo-3": {"perSecondUsd": {"720p": 0.5, "1080p": 0.75}, "source": "test"}},
        "dataPolicy": {"retainsInputs": False, "trainsOnInputs": True, "source": "test"}}
    table["rules"] = [
        {"name": "acme-to-veo", "when": {"metadata": {"customer": "acme"}}, "route": [{"provider": "veo"}]},
        {"name": "short-720p", "when": {"lengthSec": {"max": 10}, "resolution": ["720p"]},
         "route": [{"provider": "fal", "model": "wan-i2v"}, {"provider": "fal", "model": "wan-pro"},
                   {"provider": "replicate"}, {"provider": "veo"}]},
        {"name": "hd-split", "when": {"resolution": ["1080p"]},
         "split": [{"provider": "replicate", "weight": 90}, {"provider": "veo", "weight": 10}]},
    ]
    return validate_table(table)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(richer_table(), URLS)


def decide(engine: Engine, availability: Availability | None = None, **changes: Any) -> dict[str, Any]:
    return dict(engine.decide({**BASE, **changes}, None, availability))


def chosen(decision: dict[str, Any]) -> str:
    return f"{decision['provider']}/{decision['model']}"


def dropped(decision: dict[str, Any]) -> dict[str, str | None]:
    """Each candidate of the last rule that had candidates, with the filter that dropped it."""
    step = last_step(decision)
    return {f"{c['provider']}/{c['model']}": c["droppedBy"] for c in step["candidates"]}


def last_step(decision: dict[str, Any]) -> dict[str, Any]:
    return next(step for step in reversed(decision["explanation"]) if "candidates" in step)


def test_a_job_without_preferences_decides_as_before() -> None:
    shipped = Engine(load_table(), URLS)
    assert chosen(shipped.decide(BASE)) == "fal/wan-i2v"
    assert chosen(shipped.decide({**BASE, "routing": None, "consent": None})) == "fal/wan-i2v"


def test_order_comes_first_then_the_rules_candidates(engine: Engine) -> None:
    d = decide(engine, routing={"order": ["veo", "replicate"]})
    assert chosen(d) == "veo/veo-3"
    assert list(dropped(d)) == ["veo/veo-3", "replicate/minimax/video-01", "fal/wan-i2v", "fal/wan-pro"]
    assert chosen(decide(engine, routing={"order": ["fal/wan-pro"]})) == "fal/wan-pro"
    assert chosen(decide(engine, routing={"order": ["replicate/minimax/video-01"]})) == "replicate/minimax/video-01"


def test_order_is_tried_where_no_rule_matches(engine: Engine) -> None:
    d = decide(engine, lengthSec=30, resolution="480p", routing={"order": ["replicate"]})
    assert (d["outcome"], chosen(d), d["rule"]) == ("route", "replicate/minimax/video-01", "routing.order")
    assert decide(engine, lengthSec=30, resolution="480p")["reason"] == "no_route"


def test_only_and_ignore_drop_candidates(engine: Engine) -> None:
    d = decide(engine, routing={"only": ["replicate", "veo"]})
    assert chosen(d) == "replicate/minimax/video-01"
    assert dropped(d)["fal/wan-i2v"] == "only" and dropped(d)["fal/wan-pro"] == "only"
    d = decide(engine, routing={"ignore": ["fal/wan-i2v"]})
    assert chosen(d) == "fal/wan-pro" and dropped(d)["fal/wan-i2v"] == "ignore"


def test_without_fallbacks_only_the_ordered_or_first_candidate_may_take_the_job(engine: Engine) -> None:
    down = Availability({"fal": {"disabledReason": "outage"}}, now=0)
    d = decide(engine, down, routing={"allowFallbacks": False})
    assert (d["outcome"], d["reason"]) == ("unavailable", "no_available_provider")  # retryable: fal may come back
    assert dropped(d) == {"fal/wan-i2v": "availability", "fal/wan-pro": "allowFallbacks",
                          "replicate/minimax/video-01": "allowFallbacks", "veo/veo-3": "allowFallbacks"}
    d = decide(engine, routing={"order": ["veo"], "allowFallbacks": False, "ignore": ["veo"]})
    assert d["reason"] == "preferences_unsatisfiable"
    assert chosen(decide(engine, down, routing={"allowFallbacks": True})) == "replicate/minimax/video-01"


def test_sort_by_price_orders_what_order_does_not_name(engine: Engine) -> None:
    d = decide(engine, routing={"sort": "price", "order": ["veo"], "ignore": ["veo"]})
    assert list(dropped(d)) == ["veo/veo-3", "fal/wan-i2v", "replicate/minimax/video-01", "fal/wan-pro"]
    assert chosen(d) == "fal/wan-i2v"


def test_max_price_drops_and_names_the_cheapest_quote(engine: Engine) -> None:
    d = decide(engine, routing={"maxPriceUsd": 0.65, "order": ["veo"]})
    assert chosen(d) == "fal/wan-i2v" and dropped(d)["veo/veo-3"] == "maxPrice"
    d = decide(engine, routing={"maxPriceUsd": 0.1})
    assert (d["outcome"], d["reason"], d["quoteUsd"], d["quoteUsdText"]) == ("reject", "over_max_price", 0.64, "0.6400")
    assert set(dropped(d).values()) == {"maxPrice"}


def test_consent_keeps_only_providers_that_neither_retain_nor_train(engine: Engine) -> None:
    d = decide(engine, consent={"consentGiven": False})
    assert chosen(d) == "replicate/minimax/video-01"
    assert dropped(d)["fal/wan-i2v"] == "consent" and "retains inputs" in last_step(d)["candidates"][0]["skipped"]
    assert chosen(decide(engine, consent={"consentGiven": True})) == "fal/wan-i2v"
    d = decide(engine, consent={"consentGiven": False}, routing={"only": ["veo"]})  # veo trains on inputs
    assert d["reason"] == "preferences_unsatisfiable"
    assert dropped(d)["veo/veo-3"] == "consent"
    d = decide(engine, consent={"consentGiven": False}, provider="fal")
    assert (d["reason"], d["rule"]) == ("preferences_unsatisfiable", "explicit-provider")


def test_a_provider_without_data_policy_counts_as_retaining() -> None:
    table = richer_table()
    table["providers"]["replicate"]["dataPolicy"] = None
    d = Engine(table, URLS).decide({**BASE, "consent": {"consentGiven": False}})
    assert d["reason"] == "preferences_unsatisfiable"
    reasons = {c["provider"]: c["skipped"] for c in last_step(d)["candidates"]}
    assert "has no dataPolicy" in reasons["replicate"]


def test_unsatisfiable_explanation_lists_each_candidate_and_its_filter(engine: Engine) -> None:
    d = decide(engine, routing={"only": ["fal"], "ignore": ["fal/wan-i2v", "fal/wan-pro"]})
    step = last_step(d)
    assert d["reason"] == "preferences_unsatisfiable" and step["rule"] == "short-720p"
    assert step["filters"] == ["rule", "limits", "only", "ignore"]
    assert dropped(d) == {"fal/wan-i2v": "ignore", "fal/wan-pro": "ignore", "replicate/minimax/video-01": "only",
                          "veo/veo-3": "only"}


def test_every_filter_is_named_in_order(engine: Engine) -> None:
    state = Availability({}, now=0, charge_budget=lambda provider, quote, budget: (True, "b"))
    d = decide(engine, state, lengthSec=8, resolution="1080p", tier="premium",
               routing={"order": ["veo"], "only": ["veo", "replicate"], "ignore": ["fal"], "sort": "price",
                        "allowFallbacks": True, "maxPriceUsd": 50}, consent={"consentGiven": True})
    assert d["explanation"][-1]["filters"] == ["rule", "split", "sort", "order", "limits", "only", "ignore",
                                               "maxPrice", "availability"]
    assert isinstance(d["explanation"][-1]["bucket"], int)


@pytest.mark.parametrize(("changes", "names"), [
    ({"routing": {"prefer": ["fal"]}}, "routing.prefer: unknown field"),
    ({"routing": {"order": ["runway"]}}, "routing.order[0]: unknown provider"),
    ({"routing": {"only": ["fal", "fal/wan-9"]}}, "routing.only[1]: fal has no model of that name"),
    ({"routing": {"ignore": "fal"}}, "routing.ignore must be a list"),
    ({"routing": {"order": ["fal/"]}}, "routing.order[0] must be"),
    ({"routing": {"maxPriceUsd": 0}}, "routing.maxPriceUsd must be a number > 0"),
    ({"routing": {"maxPriceUsd": "1"}}, "routing.maxPriceUsd must be a number > 0"),
    ({"routing": {"sort": "speed"}}, "routing.sort must be one of: price, latency, quality"),
    ({"routing": {"allowFallbacks": "no"}}, "routing.allowFallbacks must be true or false"),
    ({"routing": ["fal"]}, "routing must be an object"),
    ({"consent": {"consentGiven": "yes"}}, "consent must be"),
    ({"metadata": {"customer": 7}}, "metadata.customer must be a string"),
    ({"metadata": {str(i): "x" for i in range(11)}}, "metadata has 11 keys, over 10"),
    ({"provider": "fal", "routing": {"sort": "price"}}, "provider fal and routing given: pick one"),
])
def test_malformed_preferences_are_invalid_routing_naming_the_field(engine: Engine, changes: dict[str, Any],
                                                                    names: str) -> None:
    d = decide(engine, **changes)
    assert (d["outcome"], d["reason"], d["rule"]) == ("reject", "invalid_routing", "validate")
    assert names in d["explanation"][-1]["why"]


def test_auto_provider_may_come_with_routing(engine: Engine) -> None:
    assert chosen(decide(engine, provider=" Auto ", routing={"order": ["veo"]})) == "veo/veo-3"


def test_rules_match_on_metadata(engine: Engine) -> None:
    d = decide(engine, metadata={"customer": "acme"})
    assert (chosen(d), d["rule"]) == ("veo/veo-3", "acme-to-veo")
    d = decide(engine, metadata={"customer": "globex"})
    assert d["rule"] == "short-720p"
    assert d["explanation"][1] == {"rule": "acme-to-veo", "matched": False,
                                   "why": "metadata.customer is globex, not acme"}


def test_split_is_sticky_and_within_two_points_of_its_weights(engine: Engine) -> None:
    providers = []
    for n in range(10_000):
        job_id = f"job-{n}"
        d = engine.decide({**BASE, "jobId": job_id, "resolution": "1080p", "lengthSec": 30})
        step = d["explanation"][-1]
        assert step["bucket"] == split_bucket(job_id)
        providers.append(d["provider"])
    share = providers.count("replicate") / len(providers) * 100
    assert 88 <= share <= 92, share
    again = [engine.decide({**BASE, "jobId": f"job-{n}", "resolution": "1080p", "lengthSec": 30})["provider"]
             for n in range(200)]
    assert again == providers[:200]


def test_the_unchosen_split_entries_stay_fallbacks_in_weight_order(engine: Engine) -> None:
    job_id = next(f"j{n}" for n in range(1000) if split_bucket(f"j{n}") >= 90)  # veo's bucket
    down = Availability({"veo": {"disabledReason": "outage"}}, now=0)
    d = engine.decide({**BASE, "jobId": job_id, "resolution": "1080p", "lengthSec": 30}, None, down)
    assert list(dropped(d)) == ["veo/veo-3", "replicate/minimax/video-01"] and d["provider"] == "replicate"


@pytest.mark.parametrize(("rule", "message"), [
    ({"split": [{"provider": "fal", "weight": 0}, {"provider": "replicate", "weight": 0}]}, "split weights sum to 0"),
    ({"split": [{"provider": "fal", "weight": -1}]}, "split[0].weight: Input should be greater than or equal to 0"),
    ({"split": [{"provider": "nope", "weight": 1}]}, "rules[0] (s): split[0].provider 'nope' is not a provider"),
    ({"split": [{"provider": "fal", "weight": 1}], "route": [{"provider": "fal"}]}, "give either route or split"),
    ({}, "give either route or split"),
])
def test_bad_splits_are_refused_at_load(rule: dict[str, Any], message: str) -> None:
    table = json.loads(DEFAULT_TABLE.read_text())
    table["rules"][0] = {"name": "s", "when": {}, **rule}
    with pytest.raises(RoutingTableError, match=re.escape(message)):
        validate_table(table)


# --- properties -----------------------------------------------------------------------------------------

ENGINE = Engine(richer_table(regions=True), URLS)
REGIONS = ["us-east-1", "eu-west-1"]  # fal's: an unknown region is the engine's to refuse, not the schema's
SELECTORS = ["fal", "fal/wan-i2v", "fal/wan-pro", "replicate", "replicate/minimax/video-01", "veo", "veo/veo-3"]
routing_objects = st.fixed_dictionaries({}, optional={
    "order": st.lists(st.sampled_from(SELECTORS), max_size=3),
    "only": st.lists(st.sampled_from(SELECTORS), max_size=3),
    "ignore": st.lists(st.sampled_from(SELECTORS), max_size=3),
    "allowFallbacks": st.booleans(),
    "sort": st.just("price"),
    "maxPriceUsd": st.floats(0.05, 10),
})
jobs = st.fixed_dictionaries({
    "jobId": st.text(min_size=1, max_size=8).filter(str.strip), "userId": st.just("u"), "prompt": st.just("p"),
    "lengthSec": st.integers(1, 30), "resolution": st.sampled_from(["720p", "1080p", "480p"]),
    "routing": routing_objects}, optional={"consent": st.builds(lambda given: {"consentGiven": given}, st.booleans()),
                                           "metadata": st.just({"customer": "acme"})})


def _matches(selectors: list[str], provider: str, model: str) -> bool:
    return any(s == provider or s == f"{provider}/{model}" for s in selectors)


def _allowed(job: dict[str, Any], provider: str, model: str, quote: float) -> bool:
    """Every filter the job's preferences and the table apply, checked from the job itself."""
    routing, spec = job["routing"], ENGINE.providers[provider]
    if any(check(_as_job(job)) for check in spec["limits"]):
        return False
    if "only" in routing and not _matches(routing["only"], provider, model):
        return False
    if _matches(routing.get("ignore", []), provider, model):
        return False
    if job.get("consent") == {"consentGiven": False} and provider != "replicate":  # the one that neither retains
        return False                                                                 # nor trains
    return not quote > routing.get("maxPriceUsd", float("inf"))


def _as_job(job: dict[str, Any]) -> Any:
    from routing_core.engine import Job

    return Job(job["lengthSec"], job, None)


def _fallback_set(job: dict[str, Any], chain: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Who may take the job with allowFallbacks false: order's candidates, or else the rule's first."""
    order = job["routing"].get("order")
    if not order:
        return chain[:1]
    named: list[tuple[str, str]] = []
    for selector in order:
        provider, _, model = selector.partition("/")
        options = [(provider, model)] if model else ([c for c in chain if c[0] == provider]
                                                     or [(provider, ENGINE.providers[provider]["model"])])
        named += [c for c in options if c not in named]
    return named


def _rule_chains(job: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The candidates of each rule whose conditions hold, in the table's order (split: the bucket's entry first)."""
    chains = []
    if job.get("metadata") == {"customer": "acme"}:
        chains.append([("veo", "veo-3")])
    if job["resolution"] == "720p" and job["lengthSec"] <= 10:
        chains.append([("fal", "wan-i2v"), ("fal", "wan-pro"), ("replicate", "minimax/video-01"), ("veo", "veo-3")])
    if job["resolution"] == "1080p":
        first = ("replicate", "minimax/video-01") if split_bucket(job["jobId"]) < 90 else ("veo", "veo-3")
        chains.append([first] + [c for c in [("replicate", "minimax/video-01"), ("veo", "veo-3")] if c != first])
    if not chains and job["routing"].get("order"):
        chains.append([])  # the job's own order alone
    return chains


def _survivors(job: dict[str, Any], chain: list[tuple[str, str]]) -> list[tuple[str, str]]:
    order_named = _fallback_set(job, chain) if job["routing"].get("order") else []
    candidates = order_named + [c for c in chain if c not in order_named]
    if not job["routing"].get("allowFallbacks", True):
        candidates = _fallback_set(job, chain)
    return [c for c in candidates if _allowed(job, *c, ENGINE.quote(*c, job["lengthSec"], job["resolution"], None))]


@settings(max_examples=600, deadline=None)
@given(jobs)
def test_the_chosen_candidate_satisfies_every_filter_and_routes_exactly_when_one_survives(job: dict[str, Any]) -> None:
    d = ENGINE.decide(copy.deepcopy(job))
    survivors = next((found for found in (_survivors(job, chain) for chain in _rule_chains(job)) if found), [])
    if d["outcome"] == "route":
        pick = (d["provider"], d["model"])
        assert pick in survivors, (pick, survivors, d["explanation"])
        assert d["quoteUsd"] == ENGINE.quote(*pick, job["lengthSec"], job["resolution"], None)
    else:
        assert survivors == [], (survivors, d["reason"], d["explanation"])
        assert d["reason"] in ("preferences_unsatisfiable", "over_max_price", "no_route")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=10)
shapes = st.fixed_dictionaries({}, optional={
    "routing": st.none() | json_values | st.dictionaries(
        st.sampled_from(["order", "only", "ignore", "allowFallbacks", "sort", "maxPriceUsd", "other"]),
        json_values | st.lists(st.sampled_from([*SELECTORS, "fal/", "Fal", ""]), max_size=3)
        | st.sampled_from(["price", "latency"]) | st.floats(-1, 5), max_size=4)
    | st.fixed_dictionaries({}, optional={  # region names are valid provider names: kept to their own fields
        "regions": json_values | st.lists(st.sampled_from([*REGIONS, "EU-west-1", "eu-west", ""]), max_size=3),
        "residency": json_values | st.sampled_from(["eu", "us", "asia"]),
        "sort": st.just("price")}),
    "consent": st.none() | json_values | st.builds(lambda v: {"consentGiven": v}, json_values),
    "metadata": st.none() | json_values | st.dictionaries(st.text(max_size=70), st.text(max_size=3) | json_values,
                                                          max_size=12),
    "provider": st.sampled_from(["auto", "fal", " AUTO "]),
})


@settings(max_examples=600, deadline=None)
@given(shapes)
def test_the_engine_and_the_contract_agree_on_malformed_preferences(extra: dict[str, Any]) -> None:
    try:
        SubmittedJob.model_validate({**BASE, **extra})
        contract_ok = True
    except ValidationError:
        contract_ok = False
    assert (ENGINE.decide({**BASE, **extra})["reason"] != "invalid_routing") == contract_ok, extra
