"""Quality prediction (issue 25 item 4): P(success) and the expected quality of a job given (provider, model,
lengthSec bucket, resolution, audio), fitted from the outcome statistics. Plain Python, no numpy: the rules
function only evaluates the fitted figures (a dict lookup and a multiplication per candidate).

Statistics per segment. The provider events function adds each counted outcome (not `invalid_input`) to an
hourly bucket of its segment, `pk = "qstats"`, `sk = "<hour epoch, 10 digits>#<provider>#<model>|<segment>"`,
`segment = "<length bucket>/<resolution>/<audio>"` (e.g. `"5-10/720p/a0"`), with the same ADD-only update as
routing_core.stats (no update lost under concurrency): samples, successes, qualityCount, qualitySum,
qualitySqSum. The segment comes from the job's record (its submittedDetail), which the outcome updates anyway.

The fit (functions/quality_model/app.py, every 15 minutes; self-contained there, boto3 only): a per-segment
Bayesian estimate shrunk to its (provider, model) prior, the buckets weighted by 0.5 ** (age / FIT_HALF_LIFE_SEC):
- success: the prior is the (provider, model) pooled rate as a Beta with PRIOR_STRENGTH pseudo-outcomes,
  Beta(k p0, k (1 - p0)); the segment's posterior mean is (k p0 + s) / (k + n).
- quality (completed jobs): a normal mean with a normal prior worth PRIOR_STRENGTH pseudo-scores at the pooled
  mean q0: (k q0 + Σq) / (k + nq).
- expected quality of a job = P(success) x quality (a failure is quality 0, as best-value counts it).
A segment with no data IS its prior; a scope with no data at all is not in the model (the strategies then use
the live statistics alone). Chosen over a regression (logistic on the features) because the features are few
and categorical, the segments are few (5 x resolutions x 2), and shrinkage gives sane figures for segments
with 3 outcomes, which a regression fitted by hand in pure Python would not without regularisation.

The fitted model is one item in the `stats` partition, `sk = "~quality-model"` ("~" sorts after every bucket,
so the rules function's existing statistics Query returns it: no extra request, no extra permission).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SEGMENT_PK = "qstats"
MODEL_SK = "~quality-model"  # in the stats partition, after every bucket
BUCKET_SEC = 3600
KEEP_SEC = 8 * 86400  # segment buckets expire (TTL) after this
LENGTH_BUCKETS = ((5.0, "0-5"), (10.0, "5-10"), (20.0, "10-20"), (60.0, "20-60"))  # (upper bound, name)


def length_bucket(length: float | None) -> str:
    if length is None:
        return "any"
    for bound, name in LENGTH_BUCKETS:
        if length <= bound:
            return name
    return "60+"


def segment(length: float | None, resolution: str | None, audio: bool | None) -> str:
    return f"{length_bucket(length)}/{resolution or 'any'}/{'a1' if audio else 'a0'}"


def segment_of_detail(detail: Mapping[str, Any]) -> str:
    """The segment of a submitted job's detail (as the job record keeps it)."""
    length = detail.get("lengthSec")
    length = float(length) if isinstance(length, (int, float)) and not isinstance(length, bool) else None
    resolution = detail.get("resolution")
    feature = detail.get("feature")
    audio = feature.get("audio") if isinstance(feature, dict) else None
    return segment(length, resolution if isinstance(resolution, str) else None, audio is True)


def record_outcome(ddb: Any, table: str, provider: str, model: str, seg: str, now: float, completed: bool,
                   quality: float | None) -> None:
    """One counted outcome into its segment's hourly bucket: ADDs only."""
    adds: dict[str, float] = {"samples": 1, "successes": 1 if completed else 0}
    if completed and quality is not None:
        adds.update(qualityCount=1, qualitySum=quality, qualitySqSum=quality * quality)
    bucket = int(now // BUCKET_SEC * BUCKET_SEC)
    names = {f"#a{i}": name for i, name in enumerate(adds)}
    values: dict[str, Any] = {f":a{i}": {"N": repr(float(v))} for i, v in enumerate(adds.values())}
    values[":expires"] = {"N": str(bucket + BUCKET_SEC + KEEP_SEC)}
    sk = f"{bucket:010d}#{provider}#{model}|{seg}"
    ddb.update_item(TableName=table, Key={"pk": {"S": SEGMENT_PK}, "sk": {"S": sk}},
                    UpdateExpression="ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds)))
                                     + " SET expiresAt = if_not_exists(expiresAt, :expires)",
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)


def parse(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The model from its item (None: none fitted yet, or unreadable)."""
    if not item or "model" not in item:
        return None
    try:
        model = json.loads(item["model"]["S"])
    except (KeyError, TypeError, ValueError):
        return None
    return model if isinstance(model, dict) and isinstance(model.get("scopes"), dict) else None


def predict(model: Mapping[str, Any] | None, provider: str, model_name: str, seg: str) -> dict[str, Any] | None:
    """{pSuccess, quality, expectedQuality, ratio, segment, samples} for the candidate's segment; ratio is the
    segment's expected quality over its (provider, model) prior's. None: the model does not know the scope."""
    scope = model["scopes"].get(f"{provider}/{model_name}") if model else None
    if not scope:
        return None
    p0, q0, _ = scope["prior"]
    known = scope["segments"].get(seg)
    p, q, samples = known if known else (p0, q0, 0)  # an unseen segment is its prior
    expected = p * q
    prior = p0 * q0
    return {"segment": seg, "pSuccess": p, "quality": q, "expectedQuality": round(expected, 4),
            "ratio": round(expected / prior, 4) if prior > 0 else 1.0, "samples": samples}
