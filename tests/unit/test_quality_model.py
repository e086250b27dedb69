"""Quality prediction (issue 25 item 4): the scheduled fit (functions/quality_model) from per-segment outcome
statistics, its item as the rules function reads it, and best-value evaluating it for the job's segment, in
plain Python (no numpy in the rules Lambda)."""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
import time
from typing import Any

import boto3
import pytest
from moto import mock_aws
from routing_core import quality
from routing_core.availability import Availability
from routing_core.engine import Engine
from routing_core.live import LiveState
from routing_core.table import RoutingTable

from routing_manager import project

SPEC = importlib.util.spec_from_file_location("quality_model_app",
                                              project.ROOT / "functions" / "quality_model" / "app.py")
assert SPEC is not None and SPEC.loader is not None
fitter: Any = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(fitter)

NOW = 1_800_000_000.0
HOUR = int(NOW // 3600 * 3600)
SHIPPED = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
QUEUES = {"FAL_QUEUE_URL": "https://sqs/fal", "REPLICATE_QUEUE_URL": "https://sqs/replicate"}
JOB = {"jobId": "j-1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p", "tier": "standard"}
SHORT, LONG, TINY = "5-10/720p/a0", "20-60/720p/a0", "0-5/720p/a0"


def bucket(scope: str, seg: str, samples: float, successes: float, qualities: list[float] | None = None,
           hour: int = HOUR) -> dict[str, Any]:
    """One hourly segment bucket as provider_events writes it (routing_core.quality.record_outcome)."""
    provider, model = scope.split("/", 1)
    qs = qualities or []
    item = {"pk": {"S": "qstats"}, "sk": {"S": f"{hour:010d}#{provider}#{model}|{seg}"},
            "samples": {"N": str(samples)}, "successes": {"N": str(successes)}}
    if qs:
        item.update(qualityCount={"N": str(len(qs))}, qualitySum={"N": str(sum(qs))},
                    qualitySqSum={"N": str(sum(q * q for q in qs))})
    return item


def test_the_segments_are_the_jobs_length_bucket_resolution_and_audio() -> None:
    assert quality.segment(8, "720p", False) == SHORT
    assert quality.segment(45, "720p", None) == LONG
    assert quality.segment(None, None, True) == "any/any/a1"
    assert quality.segment_of_detail({"lengthSec": 3, "resolution": "1080p", "feature": {"audio": True}}) \
        == "0-5/1080p/a1"


def test_the_fit_shrinks_each_segment_to_its_models_pooled_rate() -> None:
    # fal: 40 short jobs, 36 completed at quality 0.8; 4 long ones, all failed.
    items = [bucket("fal/wan-i2v", SHORT, 40, 36, [0.8] * 36), bucket("fal/wan-i2v", LONG, 4, 0)]
    model = fitter.fit(items, NOW + 1800)  # the buckets' middle: weight 1
    scope = model["scopes"]["fal/wan-i2v"]
    p0, q0 = (1 + 36) / (2 + 44), (0.5 + 0.8 * 36) / (1 + 36)
    assert scope["prior"] == [round(p0, 4), round(q0, 4), 44]
    k = fitter.PRIOR_STRENGTH
    assert scope["segments"][SHORT] == [round((k * p0 + 36) / (k + 40), 4), round((k * q0 + 28.8) / (k + 36), 4), 40]
    # Four failures do not make the long segment certain to fail: it is pulled towards fal's 80 %.
    long_p = scope["segments"][LONG][0]
    assert long_p == round(k * p0 / (k + 4), 4) and 0.5 < long_p < p0
    assert scope["segments"][LONG][1] == round(q0, 4)  # no quality seen there: its prior


def test_older_buckets_weigh_less_and_a_scope_without_samples_is_left_out() -> None:
    day = 86400
    fresh = bucket("fal/wan-i2v", SHORT, 10, 10, hour=HOUR)
    old = bucket("fal/wan-i2v", SHORT, 10, 0, hour=HOUR - day)  # a day older: half the weight
    model = fitter.fit([fresh, old, bucket("replicate/minimax/video-01", SHORT, 0, 0)], NOW + 1800)
    assert set(model["scopes"]) == {"fal/wan-i2v"}
    assert model["scopes"]["fal/wan-i2v"]["prior"][2] == pytest.approx(15.0)
    assert model["scopes"]["fal/wan-i2v"]["prior"][0] == round((1 + 10) / (2 + 15), 4)


def test_the_rules_function_evaluates_the_fitted_item_for_a_segment() -> None:
    items = [bucket("fal/wan-i2v", SHORT, 40, 36, [0.8] * 36), bucket("fal/wan-i2v", LONG, 4, 0)]
    model = quality.parse(fitter.model_item(fitter.fit(items, NOW)))
    assert model is not None
    short = quality.predict(model, "fal", "wan-i2v", SHORT)
    long = quality.predict(model, "fal", "wan-i2v", LONG)
    unseen = quality.predict(model, "fal", "wan-i2v", "0-5/1080p/a1")
    assert short is not None and long is not None and unseen is not None
    assert short["expectedQuality"] == round(short["pSuccess"] * short["quality"], 4)
    assert short["ratio"] > 1 > long["ratio"]  # better than fal's average on short jobs, worse on long ones
    assert (unseen["ratio"], unseen["samples"]) == (1.0, 0)  # a segment never seen is its model's prior
    assert quality.predict(model, "replicate", "minimax/video-01", SHORT) is None  # unknown: the live figures alone
    assert quality.parse(None) is None and quality.parse({"model": {"S": "not json"}}) is None


def test_evaluating_the_model_is_microseconds() -> None:
    model = quality.parse(fitter.model_item(fitter.fit(
        [bucket("fal/wan-i2v", seg, 40, 36, [0.8] * 36) for seg in (SHORT, LONG)], NOW)))
    runs = 20_000
    started = time.perf_counter()
    for _ in range(runs):
        quality.predict(model, "fal", "wan-i2v", quality.segment(8, "720p", False))
    assert (time.perf_counter() - started) / runs < 20e-6  # a dict lookup and a multiplication (~1-2 µs here)


def best_value() -> Engine:
    table = copy.deepcopy(SHIPPED)
    table["rules"][0].update(strategy="best-value", maxExploration=0)
    return Engine(RoutingTable.model_validate(table).model_dump(mode="json"), QUEUES)


def test_best_value_follows_the_model_to_the_segment_where_a_provider_is_weak() -> None:
    # Live figures alike for both (quality 0.7, 400 jobs); the model says fal fails clips of 5 s or less.
    live = {("fal", "wan-i2v"): {"samples": 400, "qualityMean": 0.7, "qualityWeight": 400.0, "failureWeight": 0.0},
            ("replicate", "minimax/video-01"): {"samples": 400, "qualityMean": 0.7, "qualityWeight": 400.0,
                                                "failureWeight": 0.0}}
    items = [bucket("fal/wan-i2v", SHORT, 200, 196, [0.7] * 196), bucket("fal/wan-i2v", TINY, 200, 40, [0.7] * 40),
             bucket("replicate/minimax/video-01", SHORT, 200, 190, [0.7] * 190),
             bucket("replicate/minimax/video-01", TINY, 200, 190, [0.7] * 190)]
    model = quality.parse(fitter.model_item(fitter.fit(items, NOW)))
    engine = best_value()

    def choose(length: float, with_model: bool) -> tuple[str, dict[str, Any]]:
        d = engine.decide({**JOB, "lengthSec": length}, availability=Availability(
            {}, stats=live, quality_model=model if with_model else None))
        [info] = [s["strategy"] for s in d["explanation"] if s.get("strategy")]
        return str(d["provider"]), info

    assert choose(8, with_model=False)[0] == choose(3, with_model=False)[0] == "fal"  # cheaper, same quality
    provider, info = choose(8, with_model=True)
    assert provider == "fal" and info["predicted"]["fal/wan-i2v"]["segment"] == SHORT
    provider, info = choose(3, with_model=True)
    assert provider == "replicate" and info["predicted"]["fal/wan-i2v"]["ratio"] < 0.5
    assert "adjusted to the job's segment by the quality model" in info["figure"]


def test_the_scheduled_function_fits_what_outcomes_recorded_and_the_rules_function_reads_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_STATE_TABLE", "control")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(TableName="control", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}])
        now = time.time()
        for completed in (True, True, True, False):
            quality.record_outcome(ddb, "control", "fal", "wan-i2v", SHORT, now, completed=completed,
                                   quality=0.9 if completed else None)
        monkeypatch.setattr(fitter, "_client", ddb)
        answer = fitter.lambda_handler({}, None)
        assert (answer["scopes"], answer["segments"]) == (1, 1)
        state = LiveState("control", client=ddb, read_stats=True)
        model = state.availability().quality_model
        assert model is not None
        predicted = quality.predict(model, "fal", "wan-i2v", SHORT)
        # Four outcomes, weighted by the bucket's age past its middle: at most half an hour, 0.986 at least.
        assert predicted is not None and predicted["samples"] == pytest.approx(4, abs=0.06)
        k, p0, q0 = fitter.PRIOR_STRENGTH, (1 + 3) / (2 + 4), (0.5 + 2.7) / (1 + 3)  # 3 of 4 completed, at 0.9
        assert predicted["pSuccess"] == pytest.approx((k * p0 + 3) / (k + 4), abs=0.01)
        assert predicted["quality"] == pytest.approx((k * q0 + 2.7) / (k + 3), abs=0.01)


def test_the_rules_function_evaluates_the_model_without_numpy() -> None:
    code = ("import sys; sys.path.insert(0, 'functions/rules'); import routing_core.engine, routing_core.quality,"
            " routing_core.strategies, routing_core.live; print('numpy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=project.ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "False", result.stderr
