"""A job's own routing preferences through `local up` over HTTP: the aws CLI publishes, the deployed rules
function decides, and the records, the queues and the announcements say what happened."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from routing_core.engine import split_bucket

from tests.local_up.conftest import LocalUp, job, start_local_up, tuned_table, until


def _with_an_ab_split(table: dict[str, Any]) -> None:
    """Jobs of campaign "ab" split 50/50 between fal and Replicate, before the shipped rule."""
    table["rules"].insert(0, {"name": "ab-campaign", "when": {"metadata": {"campaign": "ab"}},
                              "split": [{"provider": "fal", "weight": 50}, {"provider": "replicate", "weight": 50}]})


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalUp]:
    table = tuned_table(tmp_path_factory.mktemp("table"), _with_an_ab_split)
    yield from start_local_up("--routing-table", str(table), cli_env={"ROUTING_TABLE_PATH": str(table)})


def announced(up: LocalUp, job_id: str) -> dict[str, Any]:
    return until(lambda: next((e for e in up.events() if e["detail"].get("jobId") == job_id), None), 30,
                 f"the outcome event of {job_id}")


def test_consent_and_order_route_where_the_job_says(up: LocalUp) -> None:
    detail = job(provider=None, consent={"consentGiven": False})  # fal's dataPolicy retains inputs
    record = up.run(detail)
    assert (record["status"], record["provider"]) == ("ROUTED", "replicate")
    event = announced(up, detail["jobId"])
    assert (event["detail-type"], event["detail"]["provider"]) == ("video.job.routed", "replicate")
    message = up.client("sqs").receive_message(QueueUrl=up.outputs["ReplicateJobQueueUrl"],
                                               MaxNumberOfMessages=10)["Messages"]
    assert any(json.loads(m["Body"])["jobId"] == detail["jobId"] for m in message)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"routing": {"order": ["runway"]}}, "invalid_routing"),
    ({"provider": "fal", "routing": {"sort": "price"}}, "invalid_routing"),
    ({"routing": {"only": ["fal"]}, "consent": {"consentGiven": False}}, "preferences_unsatisfiable"),
    ({"routing": {"order": ["fal"], "allowFallbacks": False, "ignore": ["fal"]}}, "preferences_unsatisfiable"),
])
def test_each_preference_rejection_is_recorded_and_announced(up: LocalUp, changes: dict[str, Any],
                                                             reason: str) -> None:
    detail = job(**{"provider": None, **changes})
    record = up.run(detail)
    assert (record["status"], record["rejectionReason"]) == ("REJECTED", reason)
    event = announced(up, detail["jobId"])
    assert (event["detail-type"], event["detail"]["reason"], event["detail"]["quoteUsd"]) == (
        "video.job.rejected", reason, None)


def test_over_max_price_announces_the_cheapest_quote(up: LocalUp) -> None:
    detail = job(provider=None, routing={"maxPriceUsd": 0.25})
    record = up.run(detail)
    assert (record["status"], record["rejectionReason"]) == ("REJECTED", "over_max_price")
    event = announced(up, detail["jobId"])
    assert (event["detail"]["reason"], event["detail"]["quoteUsd"]) == ("over_max_price", 0.64)


def test_a_split_is_sticky_per_job_id_through_replays_and_explain(up: LocalUp, tmp_path: Path) -> None:
    ids = {"fal": next(f"ab-{n}" for n in range(100) if split_bucket(f"ab-{n}") < 50),
           "replicate": next(f"ab-{n}" for n in range(100) if split_bucket(f"ab-{n}") >= 50)}
    for provider, job_id in ids.items():
        detail = job(jobId=job_id, provider=None, metadata={"campaign": "ab"})
        assert up.run(detail)["provider"] == provider
        up.submit(detail)  # a duplicate: handled once, where the first went
        path = tmp_path / f"{job_id}.json"
        path.write_text(json.dumps(detail))
        decision = json.loads(up.cli("explain", "--json", "--live", str(path)).stdout)
        step = next(s for s in decision["explanation"] if s["rule"] == "ab-campaign")
        assert (decision["provider"], step["bucket"]) == (provider, split_bucket(job_id))
        assert up.record(job_id)["attempts"] == 1  # type: ignore[index]


def test_the_operator_cli_publishes_preferences_and_refuses_bad_ones(up: LocalUp, tmp_path: Path) -> None:
    good = job(provider=None, routing={"order": ["replicate"], "maxPriceUsd": 1})
    bad = job(provider=None, routing={"order": ["replicate"], "maxPriceUsd": 0})
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    refused = up.cli("publish", str(tmp_path / "bad.json"), check=False)
    assert refused.returncode == 2
    assert "routing.maxPriceUsd: Input should be greater than 0" in refused.stderr
    assert up.record(bad["jobId"]) is None  # nothing sent
    up.cli("publish", str(tmp_path / "good.json"))
    assert up.outcome(good["jobId"])["provider"] == "replicate"
