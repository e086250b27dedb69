"""Provider events Lambda: keeps each provider's circuit breaker and backpressure state.

Behind two EventBridge rules:
- `video.job.failed` / `video.job.completed` from the provider invokers (any source but
  `routing.manager`): each outcome is counted in its (provider, model) window with one atomic
  `ADD` (no count lost under concurrency); the breaker opens when a window holds at least
  `minRequests` outcomes and the failure share reaches `failureRate`, or at once on `rate_limited`
  with `retryAfterSec`. After `cooldownSec` the rules Lambda lets one probe job through; its outcome
  closes the breaker or opens it again. `invalid_input` is the job's fault: never counted.
- every outcome above is also kept on the job's own record (`providerOutcome`, for `job show`): one
  conditional SET, only where the record names that provider.
- `video.job.routed` from `routing.manager`, and every outcome above: the live statistics per (provider,
  model) (routing_core.stats: one atomic ADD per event; in-flight is routed - finished).
- every outcome above also ends the job's in-flight lease (`rateLimits.maxInFlight`, routing_core.rate_limits),
  in the scopes the routing table version that decided the job limits: no limit, no request.
- `CloudWatch Alarm State Change` of a queue-age alarm (`<stack>-saturated-<provider>`): ALARM marks
  the provider saturated, OK clears it. Any other alarm of the stack that goes to ALARM ends a routing
  table canary that names it in `--rollback-on` (routing_core.rollout): announced `routing.table.changed`
  with `"by": "alarm"`.

Shares routing_core (the routing table's breaker settings, the control-table items) with the rules
function, hence the same code folder. Every transition is a conditional write, audited and announced
as `routing.provider.changed` (see routing_core.control).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools.logging import Logger
from pydantic import ValidationError
from routing_core import control, quality, rate_limits, rollout, stats
from routing_core.availability import STATE_PK, scope, state_of
from routing_core.contract import (
    COMPLETED_DETAIL_TYPE,
    FAILED_DETAIL_TYPE,
    ROUTED_DETAIL_TYPE,
    ROUTER_SOURCE,
    JobCompletedDetail,
    JobFailedDetail,
)
from routing_core.live import LiveState
from routing_core.loading import DEFAULT_TABLE, load_table

ALARM_DETAIL_TYPE = "CloudWatch Alarm State Change"
BY_BREAKER = "circuit-breaker"
BY_ALARM = "queue-age-alarm"
WINDOW_DAYS_KEPT = 1  # window items expire (DynamoDB TTL) a day after they end

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "routing-manager"))
TABLE = os.environ["PROVIDER_STATE_TABLE"]
JOBS_TABLE = os.environ.get("JOBS_TABLE")
BUS = os.environ.get("EVENT_BUS_NAME", "default")
ALARM_PREFIX = os.environ.get("SATURATION_ALARM_PREFIX", "")
routing_table = load_table(Path(os.environ.get("ROUTING_TABLE_PATH") or DEFAULT_TABLE))
ddb = boto3.client("dynamodb")
events = boto3.client("events")
provider_state = LiveState(TABLE, client=ddb)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    kind = event.get("detail-type") if isinstance(event, dict) else None
    detail = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(detail, dict):
        return _ignored("no detail")
    if kind == ALARM_DETAIL_TYPE:
        return on_alarm(detail)
    if kind in (FAILED_DETAIL_TYPE, COMPLETED_DETAIL_TYPE):
        if event.get("source") == ROUTER_SOURCE:
            return _ignored("outcomes come from the provider invokers, not the router")
        return on_outcome(kind, detail)
    if kind == ROUTED_DETAIL_TYPE and event.get("source") == ROUTER_SOURCE:
        return on_routed(detail)
    return _ignored(f"detail-type {kind!r}")


def _ignored(why: str) -> dict[str, Any]:
    logger.warning("event ignored", why=why)
    return {"counted": False, "ignored": why}


def on_outcome(kind: str, detail: dict[str, Any]) -> dict[str, Any]:
    try:
        outcome = (JobFailedDetail if kind == FAILED_DETAIL_TYPE else JobCompletedDetail).model_validate(detail)
    except ValidationError as exc:
        return _ignored("invalid detail: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                       for e in exc.errors()))
    spec = routing_table["providers"].get(outcome.provider)
    if spec is None:
        return _ignored(f"provider {outcome.provider!r} is not in the routing table")
    failed = isinstance(outcome, JobFailedDetail)
    now = time.time()
    record, known = _keep_on_job(outcome, failed, now)
    # The job's in-flight leases end (rateLimits.maxInFlight): idempotent, so an error here raises and Lambda's
    # retry counts nothing twice. Only the scopes the table that decided the job limits: none, no request. A
    # record that could not be read says nothing: both scopes then (a REMOVE of no lease is a failed condition).
    leased = _leased_scopes(outcome, record) if known else [outcome.provider, f"{outcome.provider}#{outcome.model}"]
    if leased:
        rate_limits.release(ddb, TABLE, leased, outcome.jobId)
    detail_kept = _submitted_detail(record)
    # Before the breaker's window: an error here raises and Lambda retries with nothing counted yet.
    counted = not (isinstance(outcome, JobFailedDetail) and outcome.errorType == "invalid_input")
    stats.record_outcome(ddb, TABLE, outcome.provider, outcome.model, now, counted=counted, completed=not failed,
                         duration=outcome.durationSec, cost=getattr(outcome, "costUsd", None),
                         quality=getattr(outcome, "qualityScore", None))
    if counted and detail_kept is not None:  # per segment, for the quality model (routing_core.quality)
        try:
            quality.record_outcome(ddb, TABLE, outcome.provider, outcome.model, quality.segment_of_detail(detail_kept),
                                   now, completed=not failed, quality=getattr(outcome, "qualityScore", None))
        except Exception as exc:  # the model's input, not the breaker's: a retry would count the stats twice
            logger.warning("segment statistics not recorded", error=type(exc).__name__)
    if not counted:
        return {"counted": False, "ignored": "invalid_input is the job's fault, not the provider's"}

    breaker = spec["breaker"]
    # A provider that serves from several regions has a breaker per region: the invoker echoes the message's
    # providerRegion attribute. A region the table does not list (or "default") counts provider-wide.
    region = outcome.providerRegion if outcome.providerRegion in (spec.get("regions") or {}) else None
    where = scope(outcome.provider, outcome.model, region)
    window = int(now // breaker["windowSec"] * breaker["windowSec"])
    counts = ddb.update_item(  # the one write that must not be lost: an error here raises, and is retried
        TableName=TABLE, Key={"pk": {"S": f"window#{where}"}, "sk": {"S": str(window)}},
        UpdateExpression="ADD #total :one, failures :failed SET expiresAt = :expires",
        ExpressionAttributeNames={"#total": "total"},  # a reserved word
        ExpressionAttributeValues={":one": {"N": "1"}, ":failed": {"N": "1" if failed else "0"},
                                   ":expires": {"N": str(window + breaker["windowSec"] + WINDOW_DAYS_KEPT * 86400)}},
        ReturnValues="ALL_NEW")["Attributes"]
    result: dict[str, Any] = {"counted": True, "window": window}
    # Counted: from here on nothing raises, or Lambda's retry would count the outcome twice. A transition
    # that fails is tried again by the next outcome.
    try:
        total, failures = float(counts["total"]["N"]), float(counts["failures"]["N"])
        result.update(total=total, failures=failures)
        change = _transition(where, outcome, failed, breaker, now, window, total, failures)
    except Exception:
        logger.exception("breaker transition not written")
        change = None
    if change is not None:
        result["change"] = change["change"]
    return result


def _keep_on_job(outcome: JobFailedDetail | JobCompletedDetail, failed: bool,
                 now: float) -> tuple[dict[str, Any] | None, bool]:
    """The outcome on the job's record, where the record was routed to this provider. A SET: a retried event
    writes the same. It never stops the breaker's count, so a failure is a warning, not a raise. Returns (the
    record as it is now, None where no record names this provider; whether that is known)."""
    if not JOBS_TABLE:
        return None, False
    kept: dict[str, Any] = {"type": {"S": "failed" if failed else "completed"}, "model": {"S": outcome.model},
                            "at": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}}
    for name in ("errorType", "durationSec", "costUsd", "qualityScore"):
        value = getattr(outcome, name, None)
        if value is not None:
            kept[name] = {"S": value} if isinstance(value, str) else {"N": repr(float(value))}
    try:
        record: dict[str, Any] = ddb.update_item(
            TableName=JOBS_TABLE, Key={"jobId": {"S": outcome.jobId}},
            UpdateExpression="SET providerOutcome = :outcome",
            ConditionExpression="attribute_exists(jobId) AND provider = :provider",
            ExpressionAttributeValues={":outcome": {"M": kept}, ":provider": {"S": outcome.provider}},
            ReturnValues="ALL_NEW").get("Attributes", {})
    except ddb.exceptions.ConditionalCheckFailedException:
        logger.info("outcome of a job not routed to its provider here: not kept on a record")
        return None, True
    except Exception as exc:
        logger.warning("provider outcome not kept on the job record", error=type(exc).__name__)
        return None, False
    return record, True


def _submitted_detail(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job's own detail, as its record keeps it: its segment for the quality model."""
    if record is None:
        return None
    try:
        detail = json.loads(record.get("submittedDetail", {}).get("S") or "{}")
    except ValueError:
        return None
    return detail if isinstance(detail, dict) else None


_published_tables: dict[int, dict[str, Any]] = {}  # version -> its providers (a published version never changes)


def _leased_scopes(outcome: JobFailedDetail | JobCompletedDetail, record: dict[str, Any] | None) -> list[str]:
    """The scopes where the job holds an in-flight lease: those the routing table version that decided it (the
    record's tableVersion; 0 or none: the bundled one) limits with maxInFlight. No record routed to this
    provider here: no lease here. Reads a published version once per environment; the bundled table, nothing."""
    if record is None:
        return []
    version_text = (record.get("tableVersion") or {}).get("N")
    version = int(version_text) if version_text else 0
    if version == 0:
        providers = routing_table["providers"]
    else:
        if version not in _published_tables:
            try:
                _published_tables[version] = rollout.read_version(ddb, TABLE, version)["providers"]
            except Exception as exc:  # unreadable now: free both scopes (idempotent) rather than hold the outcome
                logger.warning("routing table version of the job not read: its leases are freed in both scopes",
                               version=version, error=type(exc).__name__)
                return [outcome.provider, f"{outcome.provider}#{outcome.model}"]
        providers = _published_tables[version]
    return rate_limits.in_flight_scopes(providers, outcome.provider, outcome.model)


def on_routed(detail: dict[str, Any]) -> dict[str, Any]:
    """A job the router sent to a provider: it is in flight until its outcome (or IN_FLIGHT_HORIZON_SEC)."""
    provider, model, quote = detail.get("provider"), detail.get("model"), detail.get("quoteUsd")
    if not isinstance(provider, str) or not isinstance(model, str) or provider not in routing_table["providers"]:
        return _ignored(f"routed to an unknown provider or model: {provider!r}/{model!r}")
    quote = float(quote) if isinstance(quote, (int, float)) and not isinstance(quote, bool) else None
    stats.record_routed(ddb, TABLE, provider, model, time.time(), quote)
    return {"counted": True, "routed": f"{provider}/{model}"}


def _transition(where: str, outcome: Any, failed: bool, breaker: dict[str, Any], now: float, window: int,
                total: float, failures: float) -> dict[str, Any] | None:
    item = provider_state.items().get(where)
    if item and (item.get("breakerOpenUntil") or now) < now and item.get("probeJobId") is None:
        provider_state.invalidate()  # half-open without a probe seen yet: it may have been claimed since
        item = provider_state.items().get(where)
    state, _, _ = state_of(item, now)
    if item and item.get("probeJobId") == outcome.jobId and item.get("breakerOpenUntil") is not None:
        if not failed:
            return _write(where, "available", "breaker_closed", None, None,
                          "SET closedAt = :now REMOVE breakerOpenUntil, breakerReason, probeJobId, probeUntil",
                          "probeJobId = :job", {":now": {"N": repr(now)}, ":job": {"S": outcome.jobId}})
        until = now + breaker["cooldownSec"]
        reason = f"probe job failed: {outcome.errorType}"
        return _write(where, "open", "probe_failed", reason, until,
                      "SET breakerOpenUntil = :until, breakerReason = :reason REMOVE probeJobId, probeUntil",
                      "probeJobId = :job", {":until": {"N": repr(until)}, ":reason": {"S": reason},
                                            ":job": {"S": outcome.jobId}})
    if not failed:
        return None
    if outcome.errorType == "rate_limited" and outcome.retryAfterSec:
        until = now + outcome.retryAfterSec
        reason = f"rate limited: retry after {outcome.retryAfterSec:g} s"
        return _write(where, "open", "breaker_opened", reason, until,
                      "SET breakerOpenUntil = :until, breakerReason = :reason REMOVE probeJobId, probeUntil",
                      "attribute_not_exists(breakerOpenUntil) OR breakerOpenUntil < :until",
                      {":until": {"N": repr(until)}, ":reason": {"S": reason}})
    if state in ("open", "half_open") or total < breaker["minRequests"] or failures / total < breaker["failureRate"]:
        return None
    until = now + breaker["cooldownSec"]
    reason = f"{failures:g} of {total:g} outcomes failed in {breaker['windowSec']} s"
    # A window that began before the breaker last closed does not open it again.
    return _write(where, "open", "breaker_opened", reason, until,
                  "SET breakerOpenUntil = :until, breakerReason = :reason REMOVE probeJobId, probeUntil",
                  "attribute_not_exists(breakerOpenUntil) AND (attribute_not_exists(closedAt) OR closedAt <= :window)",
                  {":until": {"N": repr(until)}, ":reason": {"S": reason}, ":window": {"N": str(window)}})


def _write(where: str, state: str, what: str, reason: str | None, until: float | None, expression: str,
           condition: str, values: dict[str, Any]) -> dict[str, Any] | None:
    try:
        ddb.update_item(TableName=TABLE, Key={"pk": {"S": STATE_PK}, "sk": {"S": where}},
                        UpdateExpression=expression, ConditionExpression=condition, ExpressionAttributeValues=values)
    except ddb.exceptions.ConditionalCheckFailedException:
        return None  # another outcome made this change first
    provider_state.invalidate()
    detail = control.change(where, state, what, BY_BREAKER, reason, until)
    control.record(ddb, events, TABLE, BUS, ROUTER_SOURCE, detail)
    logger.info("provider state changed", **detail)
    return detail


def on_alarm(detail: dict[str, Any]) -> dict[str, Any]:
    name = detail.get("alarmName")
    if not isinstance(name, str):
        return _ignored("an alarm without a name")
    if not ALARM_PREFIX or not name.startswith(ALARM_PREFIX):
        return on_canary_alarm(name, (detail.get("state") or {}).get("value"))
    provider, at, region = name[len(ALARM_PREFIX):].partition("@")  # a provider region's queue: provider@region
    if provider not in routing_table["providers"]:
        return _ignored(f"provider {provider!r} is not in the routing table")
    if at and region not in (routing_table["providers"][provider].get("regions") or {}):
        return _ignored(f"provider {provider!r} lists no region {region!r}")
    where = scope(provider, None, region or None)
    value = (detail.get("state") or {}).get("value")
    saturated = value == "ALARM"
    if saturated:
        response = ddb.update_item(
            TableName=TABLE, Key={"pk": {"S": STATE_PK}, "sk": {"S": where}},
            UpdateExpression="SET saturated = :yes, saturatedSince = :now", ReturnValues="UPDATED_OLD",
            ExpressionAttributeValues={":yes": {"BOOL": True}, ":now": {"N": repr(time.time())}})
    else:
        response = ddb.update_item(TableName=TABLE, Key={"pk": {"S": STATE_PK}, "sk": {"S": where}},
                                   UpdateExpression="REMOVE saturated, saturatedSince", ReturnValues="UPDATED_OLD")
    was = bool(response.get("Attributes", {}).get("saturated", {}).get("BOOL"))
    if was == saturated:
        return {"saturated": saturated, "changed": False}
    provider_state.invalidate()
    max_age = routing_table["providers"][provider].get("maxQueueAgeSec")
    reason = f"oldest message older than {max_age} s" if saturated else None
    detail_out = control.change(where, "saturated" if saturated else "available",
                                "saturated" if saturated else "unsaturated", BY_ALARM, reason)
    control.record(ddb, events, TABLE, BUS, ROUTER_SOURCE, detail_out)
    logger.info("provider state changed", **detail_out)
    return {"saturated": saturated, "changed": True}


def on_canary_alarm(name: str, value: Any) -> dict[str, Any]:
    """An alarm of the stack in ALARM ends the routing table canary that named it (if one does)."""
    if value != "ALARM":
        return {"canaryEnded": False, "why": f"alarm {name} is {value}"}
    change = rollout.end_canary(ddb, TABLE, name)  # Conflict (an operator changed it meanwhile): retried
    if change is None:
        return {"canaryEnded": False, "why": f"no canary rolls back on {name}"}
    provider_state.invalidate()
    control.record(ddb, events, TABLE, BUS, ROUTER_SOURCE, change, rollout.CHANGED_DETAIL_TYPE)
    logger.warning("routing table canary ended by an alarm", **change)
    return {"canaryEnded": True, **change}
