"""Availability as the engine sees it: states, precedence, explanations, the probe claim."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from routing_core.availability import Availability, by_provider, items_from_status, query_pages, state_of
from routing_core.engine import Engine
from routing_core.live import LiveState
from routing_core.loading import DEFAULT_TABLE, load_table

from routing_manager.local import moto_adapters
from routing_manager.local.stack import mocked_aws

NOW = 1_800_000_000.0
URLS = {"FAL_QUEUE_URL": "https://sqs.local/fal", "REPLICATE_QUEUE_URL": "https://sqs.local/replicate"}
JOB = {"jobId": "job-1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}


def engine(**table_changes: Any) -> Engine:
    table = load_table(DEFAULT_TABLE)
    table.update(table_changes)
    return Engine(table, URLS)


def at(items: dict[str, dict[str, Any]], claim: Any = None) -> Availability:
    return Availability(items, now=NOW, claim_probe=claim)


@pytest.mark.parametrize(("item", "state"), [
    (None, "available"),
    ({"disabledReason": "incident"}, "disabled"),
    ({"disabledReason": "incident", "disabledUntil": NOW + 1}, "disabled"),
    ({"disabledReason": "incident", "disabledUntil": NOW}, "available"),  # a timed disable expires by itself
    ({"breakerOpenUntil": NOW + 1}, "open"),
    ({"breakerOpenUntil": NOW}, "half_open"),
    ({"saturated": True}, "saturated"),
    ({"disabledReason": "x", "breakerOpenUntil": NOW + 5, "saturated": True}, "disabled"),
])
def test_state_of_an_item(item: dict[str, Any] | None, state: str) -> None:
    assert state_of(item, NOW)[0] == state


def test_the_more_blocking_scope_decides() -> None:
    items = {"fal": {"saturated": True}, "fal#wan-i2v": {"breakerOpenUntil": NOW - 1}}
    assert at(items).candidate("fal", "wan-i2v")[0] == "saturated"  # no probe for a saturated provider
    assert at({"fal#wan-i2v": {"breakerOpenUntil": NOW - 1}}).candidate("fal", "other")[0] == "available"


def test_skips_are_explained() -> None:
    items = {"fal": {"disabledReason": "incident 4711", "disabledUntil": NOW + 60}}
    d = engine().decide(JOB, None, at(items))
    assert (d["outcome"], d["provider"]) == ("route", "replicate")
    assert d["explanation"][-1]["candidates"] == [
        {"provider": "fal", "model": "wan-i2v", "quoteUsd": 0.64,
         "skipped": "disabled: incident 4711 (until 2027-01-15T08:01:00Z)", "droppedBy": "availability"},
        {"provider": "replicate", "model": "minimax/video-01", "quoteUsd": 0.6664, "skipped": None, "droppedBy": None}]
    d = engine().decide(JOB, None, at({"fal#wan-i2v": {"breakerOpenUntil": NOW + 30, "breakerReason": "5 of 5"}}))
    assert d["explanation"][-1]["candidates"][0]["skipped"] == "breaker open until 2027-01-15T08:00:30Z (5 of 5)"


def test_no_candidate_available_is_unavailable_not_a_rejection() -> None:
    items = {"fal": {"disabledReason": "x"}, "replicate": {"saturated": True}}
    d = engine().decide(JOB, None, at(items))
    assert (d["outcome"], d["reason"], d["provider"]) == ("unavailable", "no_available_provider", None)
    # A job no rule matches stays a final rejection, whatever the providers' state.
    assert engine().decide({**JOB, "lengthSec": 60}, None, at(items))["reason"] == "no_route"


def test_an_explicit_provider_is_strict_by_default_and_may_be_preferred() -> None:
    items = {"replicate": {"disabledReason": "quota"}}
    job = {**JOB, "provider": "replicate"}
    d = engine().decide(job, None, at(items))
    assert (d["outcome"], d["reason"]) == ("unavailable", "provider_unavailable:replicate")
    assert d["explanation"][-1]["why"] == "provider replicate requested (strict): disabled: quota"
    d = engine(explicitProvider="preferred").decide(job, None, at(items))
    assert (d["outcome"], d["provider"]) == ("route", "fal")  # along the rules' candidates
    d = engine(explicitProvider="preferred").decide({**job, "lengthSec": 60}, None, at(items))
    assert (d["outcome"], d["reason"]) == ("unavailable", "provider_unavailable:replicate")


def test_a_half_open_breaker_takes_only_the_job_that_claims_the_probe() -> None:
    items = {"fal#wan-i2v": {"breakerOpenUntil": NOW - 1}}
    claimed: list[str] = []

    def claim(scope: str, job_id: str) -> bool:
        claimed.append(job_id)
        return len(claimed) == 1

    availability = at(items, claim)
    first, second = (engine().decide({**JOB, "jobId": j}, None, availability) for j in ("a", "b"))
    assert (first["provider"], second["provider"]) == ("fal", "replicate")
    assert first["explanation"][-1]["why"] == "routes to fal/wan-i2v at $0.64 (the half-open breaker's probe job)"
    assert second["explanation"][-1]["candidates"][0]["skipped"] == "breaker half-open: a probe job is in flight"


def test_status_lines_read_back_as_the_same_state() -> None:
    items = {"fal": {"disabledReason": "x", "disabledUntil": NOW + 60}, "fal#wan-i2v": {"breakerOpenUntil": NOW + 5},
             "replicate": {"saturated": True}}
    lines = at(items).scopes([("fal", None), ("replicate", "minimax/video-01")])
    assert [(line["provider"], line["model"], line["state"]) for line in lines] == [
        ("fal", None, "disabled"), ("fal", "wan-i2v", "open"), ("replicate", None, "saturated"),
        ("replicate", "minimax/video-01", "available")]
    again = Availability(items_from_status(lines, NOW), now=NOW).scopes([])
    assert [line["state"] for line in again] == ["disabled", "open", "saturated", "available"]
    with pytest.raises(ValueError, match="state 'sleepy' is not one of"):
        items_from_status([{"provider": "fal", "state": "sleepy"}], NOW)


def test_by_provider_summarises_for_the_heartbeat() -> None:
    lines = at({"fal#wan-i2v": {"breakerOpenUntil": NOW + 5}}).scopes([("fal", None), ("fal", "wan-i2v"),
                                                                       ("replicate", None)])
    assert [(s["provider"], s["available"], s["breakerOpen"]) for s in by_provider(lines)] == [
        ("fal", False, True), ("replicate", True, False)]


def _control_table() -> Any:
    """A client and a table named "state" keyed like the control table (pk, sk), in the active mock."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(TableName="state", BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                {"AttributeName": "sk", "KeyType": "RANGE"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                           {"AttributeName": "sk", "AttributeType": "S"}])
    return ddb


def test_of_100_jobs_claiming_the_probe_at_once_exactly_one_wins() -> None:
    """Each job in its own execution environment (its own cache), all at the same moment."""
    moto_adapters.install()  # DynamoDB's atomic conditional writes (moto alone races: see its gap test)
    with mocked_aws():
        ddb = _control_table()
        ddb.put_item(TableName="state", Item={"pk": {"S": "state"}, "sk": {"S": "fal#wan-i2v"},
                                              "breakerOpenUntil": {"N": "1"}})
        environments = [LiveState("state", client=ddb) for _ in range(100)]
        for live in environments:
            assert live.availability().candidate("fal", "wan-i2v")[0] == "half_open"
        start = threading.Barrier(100)
        won: list[str] = []

        def decide(index: int) -> None:
            start.wait()
            if environments[index].claim_probe("fal#wan-i2v", f"job-{index}"):
                won.append(f"job-{index}")

        threads = [threading.Thread(target=decide, args=(i,)) for i in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1
        # The same job deciding again (a restarted execution) is still the probe; another is not.
        assert environments[0].claim_probe("fal#wan-i2v", won[0])
        assert not environments[0].claim_probe("fal#wan-i2v", "job-late")


def test_query_pages_follows_every_page_of_a_query() -> None:
    """A Query answers 1 MB at most: the control-state, statistics and version reads must read on."""
    with mocked_aws():
        ddb = _control_table()
        for n in range(5):
            ddb.put_item(TableName="state", Item={"pk": {"S": "state"}, "sk": {"S": f"s{n}"}})
        request = {"TableName": "state", "KeyConditionExpression": "pk = :pk", "Limit": 2,
                   "ExpressionAttributeValues": {":pk": {"S": "state"}}}
        pages = list(query_pages(ddb, request))
    assert [len(page["Items"]) for page in pages] == [2, 2, 1]
    assert [item["sk"]["S"] for page in pages for item in page["Items"]] == [f"s{n}" for n in range(5)]
    assert "ExclusiveStartKey" not in request  # the caller's request is left as it was
