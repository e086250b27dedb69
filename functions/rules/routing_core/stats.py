"""Live statistics per (provider, model), learnt from the outcomes providers send (issue 25).

Kept in the control table, `pk = "stats"`, one item per 5-minute bucket and scope:
`sk = "<bucket epoch, 10 digits>#<provider>#<model>"` (so one range Query reads every scope's recent
buckets). Each outcome and each routed job is ONE UpdateItem of `ADD`s on the bucket of now:
sums and counts only, never a value computed from a read, so concurrent outcome events cannot lose
an update (DynamoDB applies the ADDs of one item one after the other). Everything derived (the
time-decayed means that act as an EWMA, variances, the p90 estimate, in-flight) is computed when
the buckets are read: see docs/ROUTING_STRATEGIES.md, "Atomicity".

Attributes of a bucket (all numbers, absent = 0):
- samples, successes: outcomes that count for the provider (not `invalid_input`), and the completed ones
- durationCount, durationSum, durationSqSum: outcomes that gave durationSec
- qualityCount, qualitySum, qualitySqSum: completed outcomes that gave qualityScore
- costCount, costSum: completed outcomes that gave costUsd; quoteCount, quoteSum: routed jobs' quotes
- routed, finished: for in-flight (routed - finished over IN_FLIGHT_HORIZON_SEC)
- expiresAt: DynamoDB TTL, KEEP_SEC after the bucket

Plain Python (no pydantic, no boto3 import): the rules function may read it at cold start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from routing_core.availability import iso, query_pages

STATS_PK = "stats"
BUCKET_SEC = 300
KEEP_SEC = 86400  # what `provider stats` summarises; buckets expire (TTL) a day after that
HALF_LIFE_SEC = 3600.0  # a bucket an hour old weighs half as much as one of now
IN_FLIGHT_HORIZON_SEC = 3600  # a routed job with no outcome for this long is taken as lost: it stops counting
Z90 = 1.2816  # the normal distribution's 90th percentile, for the p90 estimate from mean and deviation

_SUMS = ("samples", "successes", "durationCount", "durationSum", "durationSqSum", "qualityCount", "qualitySum",
         "qualitySqSum", "costCount", "costSum", "quoteCount", "quoteSum", "routed", "finished")


def bucket_of(now: float) -> int:
    return int(now // BUCKET_SEC * BUCKET_SEC)


def key(provider: str, model: str, now: float) -> dict[str, Any]:
    return {"pk": {"S": STATS_PK}, "sk": {"S": f"{bucket_of(now):010d}#{provider}#{model}"}}


def _add(ddb: Any, table: str, provider: str, model: str, now: float, adds: Mapping[str, float]) -> None:
    names = {f"#a{i}": name for i, name in enumerate(adds)}
    values: dict[str, Any] = {f":a{i}": {"N": repr(float(v))} for i, v in enumerate(adds.values())}
    values[":expires"] = {"N": str(bucket_of(now) + BUCKET_SEC + 2 * KEEP_SEC)}
    ddb.update_item(TableName=table, Key=key(provider, model, now),
                    UpdateExpression="ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(adds)))
                                     + " SET expiresAt = if_not_exists(expiresAt, :expires)",
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)


def outcome_adds(counted: bool, completed: bool, duration: float | None = None, cost: float | None = None,
                 quality: float | None = None) -> dict[str, float]:
    """What one outcome adds to its bucket. `counted` False (`invalid_input`, the job's fault): it only ends
    the job's flight."""
    adds: dict[str, float] = {"finished": 1}
    if not counted:
        return adds
    adds.update(samples=1, successes=1 if completed else 0)
    if duration is not None:
        adds.update(durationCount=1, durationSum=duration, durationSqSum=duration * duration)
    if completed and quality is not None:
        adds.update(qualityCount=1, qualitySum=quality, qualitySqSum=quality * quality)
    if completed and cost is not None:
        adds.update(costCount=1, costSum=cost)
    return adds


def record_outcome(ddb: Any, table: str, provider: str, model: str, now: float, **outcome: Any) -> None:
    _add(ddb, table, provider, model, now, outcome_adds(**outcome))


def record_routed(ddb: Any, table: str, provider: str, model: str, now: float, quote: float | None) -> None:
    adds: dict[str, float] = {"routed": 1}
    if quote is not None:
        adds.update(quoteCount=1, quoteSum=quote)
    _add(ddb, table, provider, model, now, adds)


def read(ddb: Any, table: str, now: float, span: float = KEEP_SEC) -> list[dict[str, Any]]:
    """The buckets of the last `span` seconds, every scope: one Query (paged)."""
    request: dict[str, Any] = {
        "TableName": table, "KeyConditionExpression": "pk = :pk AND sk >= :since", "ConsistentRead": True,
        "ExpressionAttributeValues": {":pk": {"S": STATS_PK}, ":since": {"S": f"{bucket_of(now - span):010d}"}}}
    return [item for page in query_pages(ddb, request) for item in page.get("Items", [])]


def summarise(items: Iterable[Mapping[str, Mapping[str, str]]], now: float,
              known: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """One line per (provider, model), sorted: the `known` scopes (none seen yet: zeros and nulls) and any
    with buckets. Means are weighted by 0.5 ** (bucket age / HALF_LIFE_SEC): an EWMA in time."""
    scopes: dict[tuple[str, str], dict[str, Any]] = {scope: _empty() for scope in known}
    for item in items:
        if item["sk"]["S"].startswith("~"):
            continue  # not a bucket: the fitted quality model (routing_core.quality) sorts after them
        bucket_text, provider, model = item["sk"]["S"].split("#", 2)
        bucket = int(bucket_text)
        sums = {name: float(item[name]["N"]) if name in item else 0.0 for name in _SUMS}
        line = scopes.setdefault((provider, model), _empty())
        weight = 0.5 ** (max(0.0, now - bucket - BUCKET_SEC / 2) / HALF_LIFE_SEC)
        for name in _SUMS:
            line["raw"][name] += sums[name]
            line["weighted"][name] += sums[name] * weight
        if bucket + BUCKET_SEC > now - IN_FLIGHT_HORIZON_SEC:
            line["flight"] += sums["routed"] - sums["finished"]
        if sums["samples"] or sums["finished"]:
            line["last"] = max(line["last"] or 0, bucket)
    return [_line(provider, model, line) for (provider, model), line in sorted(scopes.items())]


def _empty() -> dict[str, Any]:
    return {"raw": dict.fromkeys(_SUMS, 0.0), "weighted": dict.fromkeys(_SUMS, 0.0), "flight": 0.0, "last": None}


def _mean_sd(w: Mapping[str, float], name: str) -> tuple[float | None, float | None]:
    count = w[f"{name}Count"]
    if count <= 0:
        return None, None
    mean = w[f"{name}Sum"] / count
    variance = max(0.0, w[f"{name}SqSum"] / count - mean * mean)  # rounding can make it a hair below 0
    return mean, math.sqrt(variance)


def _line(provider: str, model: str, line: Mapping[str, Any]) -> dict[str, Any]:
    raw, w = line["raw"], line["weighted"]
    duration, duration_sd = _mean_sd(w, "duration")
    quality, quality_sd = _mean_sd(w, "quality")
    cost_ratio = None
    if w["costCount"] > 0 and w["quoteCount"] > 0 and w["quoteSum"] > 0:
        # Mean charged over mean quoted: the outcome does not carry its quote, the routed event does.
        cost_ratio = (w["costSum"] / w["costCount"]) / (w["quoteSum"] / w["quoteCount"])

    def rounded(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "provider": provider, "model": model, "samples": int(raw["samples"]),
        "successRate": rounded(w["successes"] / w["samples"] if w["samples"] > 0 else None, 4),
        "durationEwmaSec": rounded(duration),
        "durationP90Sec": rounded(None if duration is None or duration_sd is None else duration + Z90 * duration_sd),
        "qualityMean": rounded(quality, 4), "qualityStdDev": rounded(quality_sd, 4),
        "qualitySamples": int(raw["qualityCount"]), "costRatio": rounded(cost_ratio, 4),
        "inFlight": max(0, int(line["flight"])), "routed": int(raw["routed"]),
        # The decayed counts behind qualityMean and the failures: best-value's Beta posterior (strategies.py).
        "qualityWeight": rounded(w["qualityCount"]), "failureWeight": rounded(w["samples"] - w["successes"]),
        "lastOutcomeAt": iso(line["last"]),  # the bucket's start: 5-minute resolution
    }
