"""Rate limits in the routing table and the engine (issue 25): the table's model, which counters a job takes,
the next candidate when one is full, rate_limited when none is left, and the give-back of a provider's slot."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError
from routing_core import rate_limits
from routing_core.availability import Availability
from routing_core.engine import Engine
from routing_core.table import RoutingTable

from routing_manager import project

SHIPPED = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
QUEUES = {"FAL_QUEUE_URL": "https://sqs/fal", "REPLICATE_QUEUE_URL": "https://sqs/replicate"}
JOB = {"jobId": "j-1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p", "tier": "standard"}


def limited(**providers: dict[str, Any]) -> dict[str, Any]:
    """The shipped table with these providers' entries changed, validated as the rules function loads it."""
    table = copy.deepcopy(SHIPPED)
    for name, change in providers.items():
        table["providers"][name].update(change)
    return RoutingTable.model_validate(table).model_dump(mode="json")


class FakeLimiter(rate_limits.Limiter):
    def __init__(self, full: set[str]) -> None:
        self.full, self.asked = full, []  # type: list[list[tuple[str, int]]]

    def admit(self, scopes: list[tuple[str, int]]) -> str | None:
        self.asked.append(scopes)
        return next((f"rate limited: {limit} jobs a minute admitted to {s}" for s, limit in scopes if s in self.full),
                    None)


@pytest.fixture
def limiter() -> Iterator[FakeLimiter]:
    fake = FakeLimiter(set())
    rate_limits.configure(fake)
    yield fake
    rate_limits.configure(None)


def live() -> Availability:
    return Availability({}, charge_budget=lambda provider, amount, limit: (True, "key"))


def test_the_table_takes_provider_and_model_limits_and_refuses_bad_ones() -> None:
    RoutingTable.model_validate(limited(fal={"rateLimits": {"maxJobsPerMinute": 5},
                                             "modelRateLimits": {"wan-i2v": {"maxJobsPerMinute": 2}}}))
    for bad in ({"rateLimits": {"maxJobsPerMinute": 0}}, {"rateLimits": {"maxJobsPerMinute": 1.5}},
                {"rateLimits": {"perMinute": 5}}):
        with pytest.raises(ValidationError):
            RoutingTable.model_validate(limited(fal=bad))


def test_a_job_takes_the_providers_and_its_models_counters(limiter: FakeLimiter) -> None:
    engine = Engine(limited(fal={"rateLimits": {"maxJobsPerMinute": 5},
                                 "modelRateLimits": {"wan-i2v": {"maxJobsPerMinute": 2}}}), QUEUES)
    decision = engine.decide(JOB, None, live())
    assert (decision["outcome"], decision["provider"]) == ("route", "fal")
    assert limiter.asked == [[("fal", 5), ("fal#wan-i2v", 2)]]


def test_a_full_candidate_passes_the_job_to_the_next_and_says_why(limiter: FakeLimiter) -> None:
    limiter.full = {"fal"}
    decision = Engine(limited(fal={"rateLimits": {"maxJobsPerMinute": 5}}), QUEUES).decide(JOB, None, live())
    assert (decision["outcome"], decision["provider"]) == ("route", "replicate")
    step = next(s for s in decision["explanation"] if s.get("candidates"))
    assert "rateLimit" in step["filters"]
    assert step["candidates"][0]["droppedBy"] == "rateLimit"
    assert step["candidates"][0]["skipped"] == "rate limited: 5 jobs a minute admitted to fal"


def test_none_left_is_rate_limited_and_unavailable_so_the_job_is_kept_for_replay(limiter: FakeLimiter) -> None:
    limiter.full = {"fal", "replicate#minimax/video-01"}
    table = limited(fal={"rateLimits": {"maxJobsPerMinute": 5}},
                    replicate={"modelRateLimits": {"minimax/video-01": {"maxJobsPerMinute": 1}}})
    decision = Engine(table, QUEUES).decide(JOB, None, live())
    assert (decision["outcome"], decision["reason"]) == ("unavailable", "rate_limited")


def test_explain_and_dry_runs_take_no_slot(limiter: FakeLimiter) -> None:
    engine = Engine(limited(fal={"rateLimits": {"maxJobsPerMinute": 5}}), QUEUES)
    assert engine.decide(JOB, None, Availability({}))["provider"] == "fal"  # no charge_budget: not a live decision
    assert engine.decide(JOB)["provider"] == "fal"
    assert limiter.asked == []


def test_a_full_model_counter_gives_the_providers_slot_back() -> None:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="control", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])
        limiter = rate_limits.Limiter(lambda: ddb, "control", clock=lambda: 600.0)
        assert limiter.admit([("fal", 5), ("fal#wan-i2v", 1)]) is None
        full = limiter.admit([("fal", 5), ("fal#wan-i2v", 1)])
        assert full == "rate limited: 1 jobs a minute admitted to fal/wan-i2v"

        def admitted(sk: str) -> str:
            item = ddb.get_item(TableName="control", Key={"pk": {"S": "rate"}, "sk": {"S": sk}})["Item"]
            return str(item["admitted"]["N"])

        assert (admitted("fal#600"), admitted("fal#wan-i2v#600")) == ("1", "1")
