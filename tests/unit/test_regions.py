"""Providers in several regions (issue 26): the region a job goes to, failover, residency, each reason code."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from routing_core.availability import Availability, by_provider, scope, split_scope
from routing_core.engine import Engine
from routing_core.loading import DEFAULT_TABLE
from routing_core.table import RoutingTableError, validate_table

URLS = {"FAL_QUEUE_URL": "https://sqs.test/Fal", "FAL_EU_QUEUE_URL": "https://sqs.test/FalEu",
        "REPLICATE_QUEUE_URL": "https://sqs.test/Replicate"}
JOB = {"jobId": "job-1", "userId": "user-123", "prompt": "A corgi surfing", "lengthSec": 8, "resolution": "720p"}
FAL_ONLY = {"only": ["fal"]}


def table(**fal: Any) -> dict[str, Any]:
    raw = json.loads(DEFAULT_TABLE.read_text())
    raw["providers"]["fal"].pop("regions", None)
    raw["providers"]["fal"]["regions"] = {  # listed against their failover order: the order is failoverOrder's
        "eu-west-1": {"queue": "FalEuJobQueue", "queueUrlEnv": "FAL_EU_QUEUE_URL", "failoverOrder": 2},
        "us-east-1": {"queue": "FalJobQueue", "queueUrlEnv": "FAL_QUEUE_URL", "failoverOrder": 1}}
    raw["providers"]["fal"].update(fal)
    return validate_table(raw)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(table(), URLS, "us-east-1")


def decide(engine: Engine, items: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    availability = Availability(items or {}) if items is not None else None
    return dict(engine.decide({**JOB, **changes}, None, availability))


def down(reason: str = "maintenance") -> dict[str, Any]:
    return {"disabledReason": reason}


def test_a_provider_with_regions_routes_to_its_first_with_that_regions_queue(engine: Engine) -> None:
    d = decide(engine, {})
    assert (d["provider"], d["providerRegion"], d["queue"], d["queueUrl"]) == (
        "fal", "us-east-1", "FalJobQueue", "https://sqs.test/Fal")
    assert d["explanation"][-1]["why"] == "routes to fal/wan-i2v at $0.64"  # a failover is named; the first is not


def test_a_region_that_is_out_fails_over_to_the_next_and_the_explanation_says_so(engine: Engine) -> None:
    d = decide(engine, {"fal@us-east-1": down("us-east-1 outage")})
    assert (d["provider"], d["providerRegion"], d["queue"]) == ("fal", "eu-west-1", "FalEuJobQueue")
    assert "in eu-west-1; failed over from us-east-1 disabled: us-east-1 outage" in d["explanation"][-1]["why"]


def test_a_regions_open_breaker_or_saturated_queue_fails_over_too(engine: Engine) -> None:
    assert decide(engine, {"fal#wan-i2v@us-east-1": {"breakerOpenUntil": 4e9}})["providerRegion"] == "eu-west-1"
    assert decide(engine, {"fal@us-east-1": {"saturated": True}})["providerRegion"] == "eu-west-1"


def test_every_region_out_spills_to_another_candidate_or_is_region_unavailable(engine: Engine) -> None:
    both_out = {"fal@us-east-1": down(), "fal@eu-west-1": {"breakerOpenUntil": 4e9}}
    spilled = decide(engine, both_out)
    assert (spilled["outcome"], spilled["provider"], spilled["providerRegion"]) == ("route", "replicate", "default")
    held = decide(engine, both_out, routing=FAL_ONLY)
    assert (held["outcome"], held["reason"]) == ("unavailable", "region_unavailable")
    fal = next(c for c in held["explanation"][-1]["candidates"] if c["provider"] == "fal")
    assert fal["droppedBy"] == "region"
    assert fal["skipped"].startswith("every region it may take the job in is out: us-east-1 disabled: maintenance; "
                                     "eu-west-1 breaker open until")


def test_a_provider_wide_state_holds_in_every_region_and_is_not_a_regions_failure(engine: Engine) -> None:
    d = decide(engine, {"fal": down("paused")}, routing=FAL_ONLY)
    assert (d["outcome"], d["reason"]) == ("unavailable", "no_available_provider")


def test_routing_regions_allows_only_those_regions(engine: Engine) -> None:
    d = decide(engine, {}, routing={"regions": ["eu-west-1"]})
    assert (d["provider"], d["providerRegion"]) == ("fal", "eu-west-1")
    held = decide(engine, {"fal@eu-west-1": down()}, routing={"regions": ["eu-west-1"]})
    assert held["reason"] == "region_unavailable"  # us-east-1 is up, but not allowed; replicate lists no regions
    replicate = next(c for c in held["explanation"][-1]["candidates"] if c["provider"] == "replicate")
    assert (replicate["droppedBy"], replicate["skipped"]) == (
        "regions", "lists no regions, and the job allows only eu-west-1")


def test_residency_keeps_the_job_in_its_geography(engine: Engine) -> None:
    us = decide(engine, {"fal@us-east-1": down()}, routing={"residency": "us"})
    assert (us["outcome"], us["reason"]) == ("unavailable", "region_unavailable")  # eu-west-1 is not in the US
    eu_router = Engine(table(), URLS, "eu-west-1")
    eu = decide(eu_router, {}, routing={"residency": "eu"})
    assert (eu["provider"], eu["providerRegion"]) == ("fal", "eu-west-1")


def test_a_residency_outside_the_routers_region_is_final_and_says_where_to_publish(engine: Engine) -> None:
    d = decide(engine, {}, routing={"residency": "eu"})
    assert (d["outcome"], d["reason"], d["rule"]) == ("reject", "preferences_unsatisfiable", "residency")
    assert d["explanation"][-1]["why"] == ("routing.residency eu: this router runs in us-east-1; publish the job to "
                                           "the router deployed in a region of eu")


def without_regions() -> dict[str, Any]:
    raw = json.loads(DEFAULT_TABLE.read_text())
    for spec in raw["providers"].values():
        spec.pop("regions", None)
    return validate_table(raw)


def test_no_provider_in_the_residency_is_preferences_unsatisfiable() -> None:
    d = decide(Engine(without_regions(), URLS, "eu-west-1"), {}, routing={"residency": "eu"})
    assert d["reason"] == "preferences_unsatisfiable"
    assert {c["droppedBy"] for c in d["explanation"][-1]["candidates"]} == {"regions"}


@pytest.mark.parametrize(("routing", "message"), [
    ({"regions": ["ap-south-1"]}, "routing.regions[0]: no provider serves from ap-south-1 (known: eu-west-1, "
                                  "us-east-1)"),
    ({"regions": []}, "routing.regions must be a list of 1..20 region names"),
    ({"regions": "eu-west-1"}, "routing.regions must be a list of 1..20 region names"),
    ({"residency": "asia"}, "routing.residency must be one of: eu, us"),
    ({"regions": ["us-east-1"], "residency": "eu"}, "routing.regions has no region inside routing.residency 'eu'"),
])
def test_unknown_regions_and_residencies_are_invalid_routing(engine: Engine, routing: dict[str, Any],
                                                             message: str) -> None:
    d = decide(engine, {}, routing=routing)
    assert (d["reason"], d["explanation"][-1]["why"]) == ("invalid_routing", message)


def test_an_explicit_provider_fails_over_then_is_region_unavailable(engine: Engine) -> None:
    assert decide(engine, {"fal@us-east-1": down()}, provider="fal")["providerRegion"] == "eu-west-1"
    d = decide(engine, {"fal@us-east-1": down(), "fal@eu-west-1": down()}, provider="fal")
    assert (d["outcome"], d["reason"]) == ("unavailable", "region_unavailable")


def test_a_half_open_regions_probe_is_claimed_in_that_region() -> None:
    claims: list[tuple[str, str]] = []
    half_open = {"fal#wan-i2v@us-east-1": {"breakerOpenUntil": 1.0}}
    availability = Availability(half_open, claim_probe=lambda key, job: claims.append((key, job)) is None)
    d = Engine(table(), URLS, "us-east-1").decide(JOB, None, availability)
    assert (d["providerRegion"], claims) == ("us-east-1", [("fal#wan-i2v@us-east-1", "job-1")])


def test_without_regions_a_provider_routes_with_providerRegion_default() -> None:
    d = Engine(without_regions(), URLS).decide(JOB, None, Availability({}))
    assert (d["outcome"], d["providerRegion"]) == ("route", "default")


@pytest.mark.parametrize(("fal", "message"), [
    ({"regions": {"Europe": {"queue": "Q", "queueUrlEnv": "Q_URL"}}}, "'Europe' is not an AWS region name"),
    ({"priorityQueues": {"urgent": {"queue": "U", "queueUrlEnv": "U_URL"}}}, "give regions or priorityQueues"),
])
def test_bad_regions_are_refused_at_load(fal: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingTableError, match=re.escape(message)):
        table(**fal)


@pytest.mark.parametrize("parts", [("fal", None, None), ("fal", "wan-i2v", None), ("fal", None, "eu-west-1"),
                                   ("replicate", "minimax/video-01", "us-east-1")])
def test_a_scope_names_provider_model_and_region(parts: tuple[str, str | None, str | None]) -> None:
    assert split_scope(scope(*parts)) == parts


def test_a_region_out_leaves_the_provider_available_in_the_heartbeat() -> None:
    lines = Availability({"fal@us-east-1": down()}).scopes([("fal", None), ("fal", "wan-i2v"), ("fal", None,
                                                                                               "us-east-1")])
    fal = next(entry for entry in by_provider(lines) if entry["provider"] == "fal")
    assert (fal["available"], fal["states"]["fal@us-east-1"]) == (True, "disabled")
