"""routing_core.rollout against moto: versions and the pointer as the CLI and the rules function use them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from routing_core import rollout
from routing_core.engine import split_bucket

from routing_manager.local import moto_adapters
from routing_manager.local.stack import mocked_aws

TABLE = "control"


@pytest.fixture
def ddb() -> Iterator[Any]:
    moto_adapters.install()
    with mocked_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                       {"AttributeName": "sk", "KeyType": "RANGE"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                  {"AttributeName": "sk", "AttributeType": "S"}])
        yield client


def test_the_canary_bucket_is_independent_of_the_split_bucket() -> None:
    ids = [f"job-{n}" for n in range(10_000)]
    both = sum(split_bucket(i) < 50 and rollout.canary_bucket(i) < 50 for i in ids)
    canary = sum(rollout.canary_bucket(i) < 50 for i in ids)
    assert abs(canary / len(ids) - 0.5) < 0.02
    assert abs(both / len(ids) - 0.25) < 0.02  # independent: a quarter of jobs in both halves


def test_versions_are_numbered_in_order_and_keep_who_when_and_why(ddb: Any) -> None:
    first = rollout.publish(ddb, TABLE, {"rules": []}, "alice", "first")
    second = rollout.publish(ddb, TABLE, {"rules": [1]}, "bob", None)
    assert (first["version"], second["version"]) == (1, 2)
    listed = rollout.versions(ddb, TABLE)
    assert [(v["version"], v["by"], v["note"]) for v in listed] == [(1, "alice", "first"), (2, "bob", None)]
    assert listed[0]["sha256"] == rollout.digest(rollout.body_of({"rules": []}))
    assert rollout.read_version(ddb, TABLE, 2) == {"rules": [1]}


def test_a_publish_that_lost_the_race_writes_nothing(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rollout.publish(ddb, TABLE, {"rules": []}, "alice", None)
    monkeypatch.setattr(rollout, "latest_version", lambda *_: 0)  # read before alice's write landed
    with pytest.raises(rollout.Conflict, match="version 1"):
        rollout.publish(ddb, TABLE, {"rules": ["mine"]}, "bob", None)
    assert rollout.read_version(ddb, TABLE, 1) == {"rules": []}


def test_a_pointer_change_on_a_stale_read_is_refused(ddb: Any) -> None:
    read = rollout.read_pointer(ddb, TABLE)
    rollout.change_pointer(ddb, TABLE, read, {"shadow": 1})
    with pytest.raises(rollout.Conflict):
        rollout.change_pointer(ddb, TABLE, read, {"canary": 1, "canaryPercent": 10.0})
    now = rollout.read_pointer(ddb, TABLE)
    assert (now.shadow, now.canary, now.rev) == (1, None, 1)


def test_the_canary_share_is_sticky_and_the_rest_stays_active() -> None:
    pointer = rollout.Pointer({"active": 2, "canary": 3, "canaryPercent": 30, "rev": 4})
    for job_id in (f"j{n}" for n in range(500)):
        expected = (3, "canary") if rollout.canary_bucket(job_id) < 30 else (2, "active")
        assert pointer.version_for(job_id) == expected == pointer.version_for(job_id)


def test_an_alarm_ends_only_a_canary_that_names_it(ddb: Any) -> None:
    read = rollout.read_pointer(ddb, TABLE)
    rollout.change_pointer(ddb, TABLE, read, {"canary": 1, "canaryPercent": 5.0,
                                              "rollbackOn": json.dumps(["s-canary-rejections"])})
    assert rollout.end_canary(ddb, TABLE, "s-other") is None
    change = rollout.end_canary(ddb, TABLE, "s-canary-rejections")
    assert change is not None
    assert (change["version"], change["mode"], change["by"]) == (1, "canary_ended", "alarm")
    assert rollout.read_pointer(ddb, TABLE).canary is None


def test_a_tampered_version_decides_with_the_bundled_table_and_says_so(
        ddb: Any, caplog: pytest.LogCaptureFixture) -> None:
    rollout.publish(ddb, TABLE, {"rules": []}, "alice", None)
    ddb.update_item(TableName=TABLE, Key=rollout.version_key(1), UpdateExpression="SET body = :b",
                    ExpressionAttributeValues={":b": {"S": '{"rules":["edited by hand"]}'}})
    errors: list[int] = []
    engines = rollout.Engines("bundled", lambda table: ("built", table), lambda: ddb, TABLE,
                              lambda: errors.append(1))
    with caplog.at_level(logging.ERROR):
        assert engines.get(1) == ("bundled", 0)
        assert engines.get(1) == ("bundled", 0)  # within 2 s: not read again, not counted again
    assert errors == [1]
    assert "sha256 does not match" in caplog.text


def test_a_good_version_is_built_once(ddb: Any) -> None:
    rollout.publish(ddb, TABLE, {"rules": []}, "alice", None)
    built: list[Any] = []
    engines = rollout.Engines("bundled", lambda table: built.append(table) or "engine-1", lambda: ddb, TABLE,
                              lambda: None)
    assert [engines.get(1) for _ in range(3)] == [("engine-1", 1)] * 3
    assert built == [{"rules": []}]


def test_record_attributes_type_the_version_and_the_shadow() -> None:
    shadow = rollout.shadow_summary(2, {"outcome": "route", "provider": "fal", "model": "m", "reason": None})
    assert rollout.record_attributes({"tableVersion": 1, "shadow": shadow}) == {
        "tableVersion": {"N": "1"},
        "shadow": {"M": {"version": {"N": "2"}, "outcome": {"S": "route"}, "provider": {"S": "fal"},
                         "model": {"S": "m"}, "reason": {"NULL": True}}}}
    assert rollout.record_attributes({"tableVersion": None}) == {"tableVersion": {"NULL": True},
                                                                 "shadow": {"NULL": True}}
