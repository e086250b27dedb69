"""The routing decision: every rule, every reason code, the boundaries."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from routing_core.contract import SubmittedJob
from routing_core.engine import Engine
from routing_core.loading import DEFAULT_TABLE, load_table

URLS = {"FAL_QUEUE_URL": "https://sqs.test/FalJobQueue", "REPLICATE_QUEUE_URL": "https://sqs.test/ReplicateJobQueue"}
BASE = {"jobId": "job-1", "userId": "user-123", "prompt": "A corgi surfing", "lengthSec": 8, "resolution": "720p"}


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_table(DEFAULT_TABLE), URLS)


def decide(engine: Engine, **changes: object) -> dict:
    detail = {**BASE, **changes}
    return engine.decide({k: v for k, v in detail.items() if v is not ...})


def test_short_720p_goes_to_fal_wan(engine: Engine) -> None:
    d = decide(engine)
    assert (d["outcome"], d["provider"], d["model"], d["queue"]) == ("route", "fal", "wan-i2v", "FalJobQueue")
    assert d["queueUrl"] == URLS["FAL_QUEUE_URL"]
    assert d["rule"] == "short-720p-to-fal" and d["reason"] is None


@pytest.mark.parametrize(("length", "outcome", "reason"), [
    (1, "route", None),
    (10, "route", None),
    (10.0, "route", None),
    (10.01, "reject", "no_route"),
    (300, "reject", "no_route"),
    (301, "reject", "invalid_length:must_be_1-300_seconds"),
    (0, "reject", "invalid_length:must_be_1-300_seconds"),
    (0.5, "reject", "invalid_length:must_be_1-300_seconds"),
    (-1, "reject", "invalid_length:must_be_1-300_seconds"),
    (math.inf, "reject", "invalid_length:must_be_1-300_seconds"),
    (-math.inf, "reject", "invalid_length:must_be_1-300_seconds"),
    (math.nan, "reject", "invalid_length:not_a_number"),
    ("8", "reject", "invalid_length:not_a_number"),
    ("abc", "reject", "invalid_length:not_a_number"),
    (True, "reject", "invalid_length:not_a_number"),
    (False, "reject", "invalid_length:not_a_number"),
    ([8], "reject", "invalid_length:not_a_number"),
    ({"s": 8}, "reject", "invalid_length:not_a_number"),
])
def test_length_boundaries(engine: Engine, length: object, outcome: str, reason: str | None) -> None:
    d = decide(engine, lengthSec=length)
    assert (d["outcome"], d["reason"]) == (outcome, reason)


def test_absent_or_null_length_is_not_an_error_but_no_auto_route(engine: Engine) -> None:
    for value in (..., None):
        d = decide(engine, lengthSec=value)
        assert d["reason"] == "no_route"
        assert d["explanation"][-1]["why"] == "lengthSec not given"


def test_absent_length_with_explicit_provider_routes(engine: Engine) -> None:
    d = decide(engine, lengthSec=None, resolution=..., provider="replicate")
    assert (d["outcome"], d["provider"]) == ("route", "replicate")


@pytest.mark.parametrize("resolution", ["1080p", "720P", ..., None, 720, ""])
def test_resolution_other_than_720p_gets_no_auto_route(engine: Engine, resolution: object) -> None:
    assert decide(engine, resolution=resolution)["reason"] == "no_route"


@pytest.mark.parametrize("field", ["jobId", "userId", "prompt"])
@pytest.mark.parametrize("value", [..., None, "", "   ", 42, ["x"], {"a": 1}])
def test_required_fields(engine: Engine, field: str, value: object) -> None:
    d = decide(engine, **{field: value})
    assert (d["outcome"], d["reason"]) == ("reject", f"missing_required_field:{field}")


def test_required_fields_are_checked_in_contract_order(engine: Engine) -> None:
    assert engine.decide({})["reason"] == "missing_required_field:jobId"
    assert engine.decide({"jobId": "j"})["reason"] == "missing_required_field:userId"


@pytest.mark.parametrize("detail", [None, [], "job", 5, True])
def test_non_object_detail_is_rejected(engine: Engine, detail: object) -> None:
    assert engine.decide(detail)["reason"] == "missing_required_field:jobId"


@pytest.mark.parametrize("provider", ["replicate", "Replicate", "REPLICATE", " replicate "])
def test_explicit_provider_any_case_wins_over_rules(engine: Engine, provider: str) -> None:
    d = decide(engine, provider=provider, lengthSec=200, resolution="1080p")
    assert (d["outcome"], d["provider"], d["model"], d["queue"]) == (
        "route", "replicate", "minimax/video-01", "ReplicateJobQueue")
    assert d["rule"] == "explicit-provider"


def test_explicit_fal_is_respected_even_where_rules_would_not_route(engine: Engine) -> None:
    d = decide(engine, provider="fal", lengthSec=60, resolution="1080p")
    assert (d["provider"], d["model"]) == ("fal", "wan-i2v")


@pytest.mark.parametrize("provider", ["auto", "AUTO", "", None])
def test_auto_means_choose_for_me(engine: Engine, provider: object) -> None:
    assert decide(engine, provider=provider)["provider"] == "fal"


@pytest.mark.parametrize(("provider", "reason"), [
    ("veo", "unsupported_provider:veo"),
    ("Runway", "unsupported_provider:Runway"),
    (7, "unsupported_provider:7"),
    (["fal"], "unsupported_provider:??fal??"),
    ("fal'; DROP TABLE jobs;--", "unsupported_provider:fal???DROP?TABLE?jobs?--"),
    ("<script>alert(1)</script>", "unsupported_provider:?script?alert?1??/script?"),
    ("x" * 500, "unsupported_provider:" + "x" * 64),
])
def test_unknown_providers_are_rejected_with_a_safe_echo(engine: Engine, provider: object, reason: str) -> None:
    assert decide(engine, provider=provider)["reason"] == reason


def test_disabled_provider_is_unsupported_and_skipped_by_rules() -> None:
    table = load_table(DEFAULT_TABLE)
    table["providers"]["fal"]["enabled"] = False
    eng = Engine(table, URLS)
    assert eng.decide({**BASE, "provider": "fal"})["reason"] == "unsupported_provider:fal"
    d = eng.decide(BASE)
    assert (d["outcome"], d["provider"]) == ("route", "replicate")  # the next candidate of the chain
    assert d["explanation"][-1]["candidates"][0] == {"provider": "fal", "model": "wan-i2v", "quoteUsd": 0.64,
                                                     "skipped": "disabled in the routing table",
                                                     "droppedBy": "limits"}
    table["providers"]["replicate"]["enabled"] = False
    d = Engine(table, URLS).decide(BASE)
    assert d["reason"] == "no_route"  # static configuration: a final rejection, not "unavailable"


def test_missing_queue_url_is_queue_not_configured() -> None:
    eng = Engine(load_table(DEFAULT_TABLE), {"FAL_QUEUE_URL": URLS["FAL_QUEUE_URL"]})
    assert eng.decide({**BASE, "provider": "replicate"})["reason"] == "queue_not_configured:replicate"
    assert Engine(load_table(DEFAULT_TABLE), {}).decide(BASE)["reason"] == "queue_not_configured:fal"


def test_explanation_says_why_each_rule_did_not_match(engine: Engine) -> None:
    d = decide(engine, lengthSec=30, resolution="1080p")
    assert d["explanation"] == [
        {"rule": "explicit-provider", "matched": False, "why": "provider is auto or not given"},
        {"rule": "short-720p-to-fal", "matched": False, "why": "lengthSec 30 > 10"},
    ]
    d = decide(engine, resolution="1080p")
    assert d["explanation"][-1]["why"] == "resolution 1080p not in 720p"


def test_provider_limits_guard_the_auto_rules() -> None:
    table = load_table(DEFAULT_TABLE)
    table["rules"][0]["when"] = {"lengthSec": {"max": 60}}  # wider than fal's 10 s limit
    table["rules"][0]["route"] = table["rules"][0]["route"][:1]  # fal alone
    eng = Engine(table, URLS)
    d = eng.decide({**BASE, "lengthSec": 30})
    assert d["reason"] == "no_route"
    assert d["explanation"][-1]["why"] == "no candidate can take the job: fal/wan-i2v limit: lengthSec 30 > 10"
    assert eng.decide({**BASE, "lengthSec": 8, "feature": {"audio": True}})["explanation"][-1]["why"] == (
        "no candidate can take the job: fal/wan-i2v limit: feature.audio is true")


def test_conditions_on_tier_audio_and_credits() -> None:
    table = load_table(DEFAULT_TABLE)
    table["rules"].insert(0, {
        "name": "premium-audio", "description": "", "route": [{"provider": "replicate", "model": None}],
        "when": {"lengthSec": None, "resolution": None, "tier": ["premium"], "audio": True, "minCredits": 5}})
    eng = Engine(table, URLS)
    premium = {**BASE, "tier": "premium", "feature": {"audio": True}}
    assert eng.decide(premium, 10)["provider"] == "replicate"
    assert eng.decide(premium, 2)["explanation"][1]["why"] == "credit balance 2 < 5"
    assert eng.decide(premium, None)["explanation"][1]["why"] == "credit balance unknown"
    assert eng.decide({**premium, "tier": "standard"}, 10)["explanation"][1]["why"] == "tier standard not in premium"
    assert eng.decide({**premium, "feature": {"audio": "yes"}}, 10)["explanation"][1]["why"] == "feature.audio is false"
    assert eng.decide({**premium, "tier": None}, 10)["explanation"][1]["why"] == "tier not given"
    # The workflow passes DynamoDB's N as text: a numeric string is a balance, anything else unknown.
    assert eng.decide(premium, "12")["provider"] == "replicate"
    assert eng.decide(premium, "4.5")["explanation"][1]["why"] == "credit balance 4.5 < 5"
    assert eng.decide(premium, "lots")["explanation"][1]["why"] == "credit balance unknown"


def test_decision_has_exactly_the_keys_the_workflow_reads(engine: Engine) -> None:
    keys = {"outcome", "provider", "model", "queue", "queueUrl", "reason", "rule", "explanation", "submittedDetail",
            "quoteUsd", "quoteUsdText", "priority", "providerRegion"}
    assert set(decide(engine)) == keys
    assert set(decide(engine, lengthSec=0)) == keys


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
contract_keys = st.sampled_from(["jobId", "userId", "prompt", "lengthSec", "resolution", "tier", "provider", "feature"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(contract_keys | st.text(max_size=8), json_values, max_size=10), json_values)
def test_any_json_object_yields_a_decision(engine: Engine, detail: dict, credits: object) -> None:
    d = engine.decide(detail, credits)
    assert d["outcome"] in ("route", "reject")
    assert (d["reason"] is None) == (d["outcome"] == "route")
    json.dumps(d)  # the decision always serialises for the state machine


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({"jobId": json_values | st.text(min_size=1), "userId": json_values | st.just("u"),
                              "prompt": json_values | st.just("p"), "lengthSec": json_values | st.integers(1, 300)}))
@example(detail={"jobId": "\x1f", "userId": "u", "prompt": "p", "lengthSec": 1})  # str.strip() blanks it
@example(detail={"jobId": "\u3000", "userId": "u", "prompt": "p", "lengthSec": 1})
def test_engine_validation_agrees_with_the_contract_model(engine: Engine, detail: dict) -> None:
    """The engine validates by hand (cold start); the pydantic contract is the source of truth."""
    try:
        SubmittedJob.model_validate(detail)
        contract_ok = True
    except ValidationError:
        contract_ok = False
    reason = engine.decide(detail)["reason"] or ""
    engine_ok = not reason.startswith(("missing_required_field", "invalid_length", "invalid_job_id", "job_too",
                                       "invalid_encoding"))
    assert engine_ok == contract_ok, (detail, reason)
