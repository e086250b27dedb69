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

    def admit(self, scopes: list[tuple[str, int]], flights: list[tuple[str, int]] | None = None,
              job_id: str | None = None) -> str | None:
        self.asked.append(scopes + [(f"flight:{s}", limit) for s, limit in flights or []])
        return next((f"rate limited: {limit} jobs a minute admitted to {s}" for s, limit in scopes if s in self.full),
                    None) or next((f"rate limited: {limit} jobs in flight at {s} (maxInFlight)"
                                   for s, limit in flights or [] if f"flight:{s}" in self.full), None)

    def release(self, flights: list[str], job_id: str) -> None:
        self.asked.append([(f"release:{s}", 0) for s in flights])


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


def control_table() -> Any:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(TableName="control", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    return ddb


def leases(ddb: Any, scope: str) -> dict[str, Any]:
    item = ddb.get_item(TableName="control", Key={"pk": {"S": "rate"}, "sk": {"S": f"flight#{scope}"}}).get("Item")
    return item["leases"]["M"] if item else {}


def test_the_table_takes_max_in_flight_per_provider_and_model() -> None:
    per_model = {"wan-i2v": {"maxInFlight": 2, "maxJobsPerMinute": 9}}
    RoutingTable.model_validate(limited(fal={"rateLimits": {"maxInFlight": 5}, "modelRateLimits": per_model}))
    with pytest.raises(ValidationError):
        RoutingTable.model_validate(limited(fal={"rateLimits": {"maxInFlight": 0}}))


def test_a_job_takes_a_lease_of_the_providers_and_its_models_in_flight_limit(limiter: FakeLimiter) -> None:
    engine = Engine(limited(fal={"rateLimits": {"maxJobsPerMinute": 5, "maxInFlight": 3},
                                 "modelRateLimits": {"wan-i2v": {"maxInFlight": 2}}}), QUEUES)
    assert engine.decide(JOB, None, live())["provider"] == "fal"
    assert limiter.asked == [[("fal", 5), ("flight:fal", 3), ("flight:fal#wan-i2v", 2)]]


def test_a_candidate_with_every_slot_in_flight_passes_the_job_on_and_explain_says_why(limiter: FakeLimiter) -> None:
    limiter.full = {"flight:fal"}
    decision = Engine(limited(fal={"rateLimits": {"maxInFlight": 2}}), QUEUES).decide(JOB, None, live())
    assert (decision["outcome"], decision["provider"]) == ("route", "replicate")
    step = next(s for s in decision["explanation"] if s.get("candidates"))
    assert "rateLimit" in step["filters"]
    assert (step["candidates"][0]["droppedBy"], step["candidates"][0]["skipped"]) == (
        "rateLimit", "rate limited: 2 jobs in flight at fal (maxInFlight)")
    limiter.full = {"flight:fal", "flight:replicate"}
    table = limited(fal={"rateLimits": {"maxInFlight": 2}}, replicate={"rateLimits": {"maxInFlight": 1}})
    decision = Engine(table, QUEUES).decide(JOB, None, live())
    assert (decision["outcome"], decision["reason"]) == ("unavailable", "rate_limited")


def test_a_budget_that_refuses_the_job_gives_its_lease_back(limiter: FakeLimiter) -> None:
    engine = Engine(limited(fal={"rateLimits": {"maxInFlight": 2}, "dailyBudgetUsd": 1}), QUEUES)
    refused = Availability({}, charge_budget=lambda provider, amount, limit: (provider != "fal", "spent"))
    assert engine.decide(JOB, None, refused)["provider"] == "replicate"
    assert [("release:fal", 0)] in limiter.asked


def test_leases_hold_the_limit_are_idempotent_per_job_freed_by_release_and_expire() -> None:
    with mock_aws():
        ddb = control_table()
        now = [1000.0]
        limiter = rate_limits.Limiter(lambda: ddb, "control", clock=lambda: now[0])
        assert limiter.admit([], [("fal", 2)], "a") is None  # the scope's first lease creates its map
        assert limiter.admit([], [("fal", 2)], "b") is None
        assert limiter.admit([], [("fal", 2)], "a") is None  # a replayed decision: no second slot
        assert limiter.admit([], [("fal", 2)], "c") == "rate limited: 2 jobs in flight at fal (maxInFlight)"
        assert sorted(leases(ddb, "fal")) == ["a", "b"]
        rate_limits.release(ddb, "control", ["fal", "fal#wan-i2v"], "a")  # an outcome; the model scope has none
        assert limiter.admit([], [("fal", 2)], "c") is None
        assert limiter.admit([], [("fal", 2)], "d") is not None
        now[0] += rate_limits.LEASE_SEC + 1  # b's and c's outcomes were lost: their leases end
        assert limiter.admit([], [("fal", 2)], "d") is None
        assert sorted(leases(ddb, "fal")) == ["d"]


def test_a_full_in_flight_limit_gives_the_minute_slot_back() -> None:
    with mock_aws():
        ddb = control_table()
        limiter = rate_limits.Limiter(lambda: ddb, "control", clock=lambda: 600.0)
        assert limiter.admit([("fal", 5)], [("fal", 1), ("fal#wan-i2v", 1)], "a") is None
        assert limiter.admit([("fal", 5)], [("fal", 1)], "b") is not None
        assert limiter.admit([("fal", 5)], [("fal", 9), ("fal#wan-i2v", 1)], "b") is not None
        counter = ddb.get_item(TableName="control", Key={"pk": {"S": "rate"}, "sk": {"S": "fal#600"}})["Item"]
        assert counter["admitted"]["N"] == "1"
        assert sorted(leases(ddb, "fal")) == ["a"]  # b's lease of fal was given back when its model's was full


@pytest.fixture
def provider_events(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Any]:
    """The provider events function's module, imported as Lambda imports it, on moto's control and jobs
    tables; its routing table limits fal to 2 in flight and nothing else."""
    import importlib
    import sys

    path = tmp_path / "routing_table.json"
    path.write_text(json.dumps(limited(fal={"rateLimits": {"maxInFlight": 2}})))
    for name, value in {"PROVIDER_STATE_TABLE": "control", "JOBS_TABLE": "jobs", "ROUTING_TABLE_PATH": str(path),
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        ddb = control_table()
        ddb.create_table(TableName="jobs", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}])
        sys.modules.pop("provider_events", None)
        module = importlib.import_module("provider_events")
        yield module
        sys.modules.pop("provider_events", None)


def rate_requests(module: Any, job_id: str, provider: str, model: str) -> list[str]:
    """The requests an outcome of `job_id` (routed to provider/model, bundled table) sends to the rate items."""
    module.ddb.put_item(TableName="jobs", Item={"jobId": {"S": job_id}, "provider": {"S": provider},
                                                "model": {"S": model}, "tableVersion": {"N": "0"}})
    sent: list[str] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key", {}).get("pk", {}).get("S") == rate_limits.RATE_PK:
            sent.append(params["Key"]["sk"]["S"])

    module.ddb.meta.events.register("provide-client-params.dynamodb.*", note)
    try:
        module.on_outcome("video.job.completed", {"jobId": job_id, "provider": provider, "model": model})
    finally:
        module.ddb.meta.events.unregister("provide-client-params.dynamodb.*", note)
    return sent


def test_an_outcome_ends_a_lease_only_where_the_deciding_table_limits_in_flight(provider_events: Any) -> None:
    limiter = rate_limits.Limiter(lambda: provider_events.ddb, "control")
    assert limiter.admit([], [("fal", 2)], "to-fal") is None
    assert rate_requests(provider_events, "to-fal", "fal", "wan-i2v") == ["flight#fal"]
    assert leases(provider_events.ddb, "fal") == {}
    # replicate has no limit in that table: its outcomes cost no request to the rate items at all.
    assert rate_requests(provider_events, "to-replicate", "replicate", "minimax/video-01") == []


def test_an_outcome_of_a_job_decided_by_a_published_table_ends_the_lease_that_table_took(provider_events: Any) -> None:
    from routing_core import rollout

    published = limited(replicate={"modelRateLimits": {"minimax/video-01": {"maxInFlight": 1}}})
    version = rollout.publish(provider_events.ddb, "control", published, "test", None)["version"]
    limiter = rate_limits.Limiter(lambda: provider_events.ddb, "control")
    assert limiter.admit([], [("replicate#minimax/video-01", 1)], "j") is None
    provider_events.ddb.put_item(TableName="jobs", Item={
        "jobId": {"S": "j"}, "provider": {"S": "replicate"}, "model": {"S": "minimax/video-01"},
        "tableVersion": {"N": str(version)}})
    provider_events.on_outcome("video.job.failed", {"jobId": "j", "provider": "replicate",
                                                    "model": "minimax/video-01", "errorType": "provider_error"})
    assert leases(provider_events.ddb, "replicate#minimax/video-01") == {}


def test_an_outcome_whose_table_version_cannot_be_read_frees_both_scopes_and_still_counts(
        provider_events: Any) -> None:
    limiter = rate_limits.Limiter(lambda: provider_events.ddb, "control")
    assert limiter.admit([], [("replicate", 1)], "j") is None
    provider_events.ddb.put_item(TableName="jobs", Item={
        "jobId": {"S": "j"}, "provider": {"S": "replicate"}, "model": {"S": "minimax/video-01"},
        "tableVersion": {"N": "99"}})  # never published (or gone)
    result = provider_events.on_outcome("video.job.completed", {"jobId": "j", "provider": "replicate",
                                                                "model": "minimax/video-01"})
    assert result["counted"] is True and leases(provider_events.ddb, "replicate") == {}


def test_a_decision_with_no_rate_limit_in_its_table_asks_the_limiter_nothing(limiter: FakeLimiter) -> None:
    assert Engine(limited(), QUEUES).decide(JOB, None, live())["outcome"] == "route"
    only_replicate = Engine(limited(replicate={"rateLimits": {"maxInFlight": 3}}), QUEUES)
    assert only_replicate.decide(JOB, None, live())["provider"] == "fal"
    assert limiter.asked == []
