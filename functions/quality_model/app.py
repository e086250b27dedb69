"""Quality model: every 15 minutes, fit P(success) and the expected quality per (provider, model, lengthSec
bucket, resolution, audio) from the segment statistics, and write the figures where the rules function reads
them (issue 25 item 4; the model and its evaluation: functions/rules/routing_core/quality.py).

Reads `pk = "qstats"` (one paged Query of the last FIT_SPAN_SEC), writes one item, `pk = "stats"`,
`sk = "~quality-model"`: the rules function's statistics Query returns it with the buckets. Plain Python and
boto3 (in the Lambda runtime): this package is its code. The fit, per segment, shrunk to its (provider, model):
- success: Beta(k p0, k (1 - p0)) prior, p0 the (provider, model) pooled rate under Beta(1, 1); posterior mean
  (k p0 + s) / (k + n), k = PRIOR_STRENGTH pseudo-outcomes.
- quality of completed jobs: a normal mean with a prior worth k pseudo-scores at the pooled mean q0:
  (k q0 + Σq) / (k + nq).
Buckets are weighted by 0.5 ** (age / FIT_HALF_LIFE_SEC). A failed fit raises (the function's Errors metric);
the rules function keeps deciding with the last model written. Each fit written counts one `QualityModelFits`
(EMF): the quality-model-stale alarm fires when an hour passes without one, whatever stopped the fits (an
error, a disabled schedule, a denied write), since the model the rules function evaluates is then aging.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

SEGMENT_PK = "qstats"  # routing_core.quality.SEGMENT_PK
MODEL_PK, MODEL_SK = "stats", "~quality-model"  # routing_core.quality.MODEL_SK
BUCKET_SEC = 3600  # routing_core.quality.BUCKET_SEC
FIT_SPAN_SEC = 7 * 86400
FIT_HALF_LIFE_SEC = 86400.0
PRIOR_STRENGTH = 10.0
_SUMS = ("samples", "successes", "qualityCount", "qualitySum", "qualitySqSum")

_client: Any = None


def client() -> Any:
    global _client
    if _client is None:
        import boto3

        _client = boto3.client("dynamodb")
    return _client


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    table = os.environ["PROVIDER_STATE_TABLE"]
    now = time.time()
    model = fit(read(client(), table, now), now)
    client().put_item(TableName=table, Item=model_item(model))
    segments = sum(len(scope["segments"]) for scope in model["scopes"].values())
    print(json.dumps({"level": "INFO", "message": "quality model written", "scopes": len(model["scopes"]),
                      "segments": segments}))
    print(json.dumps(fit_metrics(segments, now)))
    return {"scopes": len(model["scopes"]), "segments": segments, "fittedAt": model["fittedAt"]}


def fit_metrics(segments: int, now: float) -> dict[str, Any]:
    """The EMF line of a fit written: QualityModelFits (the stale alarm's heartbeat) and the segments fitted."""
    return {"_aws": {"Timestamp": int(now * 1000), "CloudWatchMetrics": [{
        "Namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "VideoJobRouting"), "Dimensions": [["service"]],
        "Metrics": [{"Name": "QualityModelFits", "Unit": "Count"},
                    {"Name": "QualityModelSegments", "Unit": "Count"}]}]},
        "service": os.environ.get("POWERTOOLS_SERVICE_NAME", "routing-manager"),
        "QualityModelFits": 1, "QualityModelSegments": segments}


def read(ddb: Any, table: str, now: float) -> list[dict[str, Any]]:
    since = int((now - FIT_SPAN_SEC) // BUCKET_SEC * BUCKET_SEC)
    request: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "pk = :pk AND sk >= :since",
        "ExpressionAttributeValues": {":pk": {"S": SEGMENT_PK}, ":since": {"S": f"{since:010d}"}}}
    items: list[dict[str, Any]] = []
    while True:
        page = ddb.query(**request)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def fit(items: Iterable[Mapping[str, Mapping[str, str]]], now: float) -> dict[str, Any]:
    """The model from segment buckets: {"fittedAt", "priorStrength", "scopes": {"provider/model": {"prior":
    [pSuccess, quality, samples], "segments": {segment: [pSuccess, quality, samples]}}}}."""
    sums: dict[str, dict[str, dict[str, float]]] = {}
    for item in items:
        bucket_text, provider, rest = item["sk"]["S"].split("#", 2)
        model, seg = rest.rsplit("|", 1)
        weight = 0.5 ** (max(0.0, now - int(bucket_text) - BUCKET_SEC / 2) / FIT_HALF_LIFE_SEC)
        line = sums.setdefault(f"{provider}/{model}", {}).setdefault(seg, dict.fromkeys(_SUMS, 0.0))
        for name in _SUMS:
            line[name] += float(item[name]["N"]) * weight if name in item else 0.0
    scopes: dict[str, Any] = {}
    k = PRIOR_STRENGTH
    for label, segments in sorted(sums.items()):
        n = sum(s["samples"] for s in segments.values())
        if n <= 0:
            continue
        p0 = (1.0 + sum(s["successes"] for s in segments.values())) / (2.0 + n)  # Beta(1, 1) on the pool
        nq = sum(s["qualityCount"] for s in segments.values())
        q0 = (0.5 + sum(s["qualitySum"] for s in segments.values())) / (1.0 + nq)  # one pseudo-score at 0.5
        fitted = {seg: [round((k * p0 + s["successes"]) / (k + s["samples"]), 4),
                        round((k * q0 + s["qualitySum"]) / (k + s["qualityCount"]), 4), round(s["samples"], 2)]
                  for seg, s in sorted(segments.items())}
        scopes[label] = {"prior": [round(p0, 4), round(q0, 4), round(n, 2)], "segments": fitted}
    return {"fittedAt": round(now), "priorStrength": k, "scopes": scopes}


def model_item(model: Mapping[str, Any]) -> dict[str, Any]:
    return {"pk": {"S": MODEL_PK}, "sk": {"S": MODEL_SK}, "model": {"S": json.dumps(model, separators=(",", ":"))}}
