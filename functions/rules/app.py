"""Rules Lambda: decides where a submitted video job goes.

Input (from the state machine): {"detail": <video.job.submitted detail>, "creditsTable": <name or "">,
"creditBalance": <number or null, once read>, "dryRun": <bool, heartbeat canary>}.
Output: the decision the workflow branches on (see routing_core.engine). When the routing table routes
on credits and a Credits table is configured, the first answer is `read_credits`: the workflow reads
the balance and asks again with `creditBalance` set. Provider availability comes from the control
table (PROVIDER_STATE_TABLE), read at most every 2 s; a dry run also answers every provider's state.

Cold start is what Lambda bills as INIT, so only Powertools Logger/Metrics and the
plain-Python engine load here; pydantic loads only for an unverified routing table.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit
from routing_core import batch, rate_limits, rollout
from routing_core.availability import Availability, by_provider
from routing_core.engine import Decision, Engine, echo
from routing_core.live import LiveState
from routing_core.loading import DEFAULT_TABLE, load_table
from routing_core.reasons import INVALID_JOB_ID_PREFIX

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "routing-manager"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "VideoJobRouting"))
table = load_table(Path(os.environ.get("ROUTING_TABLE_PATH") or DEFAULT_TABLE))
ROUTER_REGION = os.environ.get("AWS_REGION")  # where this router runs: a job's residency must include it
engine = Engine(table, os.environ, ROUTER_REGION)
provider_state = LiveState(os.environ["PROVIDER_STATE_TABLE"], {
    name: spec["breaker"]["probeTimeoutSec"] for name, spec in table["providers"].items()
}, read_stats=True) if os.environ.get("PROVIDER_STATE_TABLE") else None  # statistics: routing_core.strategies
# Published routing tables (routing_core.rollout): the pointer rides in provider_state's cached read.
if provider_state is not None:  # rate limits share the control table and its client (routing_core.rate_limits)
    _state = provider_state
    rate_limits.configure(rate_limits.Limiter(lambda: _state.client, _state.table_name))


def _published_engines(state: LiveState) -> rollout.Engines:
    return rollout.Engines(engine, lambda published: Engine(published, os.environ, ROUTER_REGION),
                           lambda: state.client, state.table_name, state.note_read_error)


engines = _published_engines(provider_state) if provider_state else None

_OUTCOME_METRIC = {"route": "routed", "reject": "rejected", "unavailable": "unavailable"}
_SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "routing-manager")
_NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "VideoJobRouting")


def _emf(dimensions: list[list[str]], values: dict[str, float], properties: dict[str, str]) -> None:
    """One EMF line of its own: metrics whose dimensions differ from the decision's RoutingAttempts."""
    print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
        "Namespace": _NAMESPACE, "Dimensions": dimensions,
        "Metrics": [{"Name": name, "Unit": "Count"} for name in values]}]}, **properties, **values}))


def _control_state_metrics(read_errors: int, age_sec: float) -> None:
    """ControlStateReadErrors and ControlStateAgeSeconds (dimension service only, what the
    control-state alarm reads), one EMF line, written only when a read failed or the state is not
    fresh: a healthy decision costs no extra log line."""
    print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
        "Namespace": _NAMESPACE, "Dimensions": [["service"]],
        "Metrics": [{"Name": "ControlStateReadErrors", "Unit": "Count"},
                    {"Name": "ControlStateAgeSeconds", "Unit": "Seconds"}]}]},
        "service": _SERVICE, "ControlStateReadErrors": read_errors, "ControlStateAgeSeconds": age_sec}))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> Decision | dict[str, Any]:
    payload = event if isinstance(event, dict) else {}
    if "batch" in payload:  # video.job.batch.submitted: one invoke decides every job (routing_core.batch)
        return batch.plan(payload["batch"], lambda job: _decide_in_batch(job, payload.get("creditsTable")))
    return _decide(payload)


def _decide_in_batch(job: Any, credits_table: Any) -> Decision:
    """A job of a batch decided exactly as a single job (same engine, version, shadow, log line and
    RoutingAttempts), its metric line flushed on its own: one line per decision, as for a single job."""
    decision = _decide({"detail": job, "creditsTable": credits_table})
    if metrics.metric_set:
        metrics.flush_metrics()
    return decision


def _decide(payload: dict[str, Any]) -> Decision:
    detail = payload.get("detail")
    job_id = detail.get("jobId") if isinstance(detail, dict) else None
    logger.set_correlation_id(echo(job_id) if job_id is not None else None)

    dry_run = payload.get("dryRun") is True
    # The routing table version that decides: the active one, or the canary for the jobs in its share.
    pointer = rollout.Pointer(provider_state.items().get(rollout.POINTER_SK)) if provider_state else None
    decider, version, role = engine, 0, "active"
    if pointer is not None and engines is not None and isinstance(job_id, str):
        wanted, role = pointer.version_for(job_id)
        decider, version = engines.get(wanted)
    credits_first = bool(decider.uses_credits and payload.get("creditsTable") and "creditBalance" not in payload
                         and isinstance(detail, dict))
    # Availability only for the decision that counts: a first pass before the balance claims no probe.
    availability = provider_state.availability(may_probe=not dry_run) if provider_state and not credits_first \
        else None
    decision = decider.decide(detail, payload.get("creditBalance"), availability)
    decision["tableVersion"] = version
    if pointer is not None and pointer.shadow is not None and not dry_run and not credits_first \
            and isinstance(job_id, str) and decision["outcome"] in _OUTCOME_METRIC:
        _decide_in_shadow(pointer.shadow, decision, detail, payload.get("creditBalance"), job_id)
    if provider_state is not None:
        freshness = provider_state.freshness()
        read_errors = provider_state.take_read_errors()
        if read_errors or freshness["liveState"] != "fresh":
            age = freshness["liveStateAgeSec"]
            _control_state_metrics(read_errors, age if age is not None else round(
                time.monotonic() - provider_state.started_at, 1))
        decision["liveState"], decision["liveStateAgeSec"] = freshness["liveState"], freshness["liveStateAgeSec"]
    if credits_first and decision["rule"] != "validate" and isinstance(detail, dict):
        decision = {**decider.read_credits_first(decision, detail), "tableVersion": version}
    decision["recordAttributes"] = rollout.record_attributes(decision)
    if dry_run and availability is not None:
        decision["providers"] = by_provider(availability.scopes([*decider.candidates(), *decider.region_scopes()]))
    # Never the prompt or other job content: only what the decision says. One log line per decision:
    # the fields ride in the EMF metric line as properties (searchable in Logs Insights, no dimensions).
    fields: dict[str, Any] = {"jobId": echo(job_id) if job_id is not None else None, "decision": decision["outcome"],
              "rule": decision["rule"], "model": decision["model"], "reason": decision["reason"],
              "quoteUsd": decision["quoteUsd"], "priority": decision["priority"], "tableVersion": version,
              "liveState": decision.get("liveState"), "liveStateAgeSec": decision.get("liveStateAgeSec")}
    # A jobId that cannot be a key is rejected without a record, and the workflow counts those itself
    # (CountUnrecordedRejection): counting it here too counted it twice.
    unrecorded = (decision["reason"] or "").startswith(INVALID_JOB_ID_PREFIX)
    if not dry_run and decision["outcome"] in _OUTCOME_METRIC and not unrecorded:
        metrics.add_dimension("provider", decision["provider"] or "none")
        metrics.add_dimension("outcome", _OUTCOME_METRIC[decision["outcome"]])
        metrics.add_metric(name="RoutingAttempts", unit=MetricUnit.Count, value=1)
        if pointer is not None and pointer.canary is not None:  # a canary's rates beside the base version's
            _emf([["TableRole", "outcome"], ["TableVersion", "outcome"]], {"TableDecisions": 1},
                 {"TableRole": role, "TableVersion": str(version), "outcome": _OUTCOME_METRIC[decision["outcome"]],
                  "service": _SERVICE})
        for key, value in fields.items():
            metrics.add_metadata(key=key, value=value)
    else:  # no metric to carry them (a dry run, a request for the balance): a line at DEBUG
        logger.debug("routing decision", extra={"provider": decision["provider"], "dryRun": dry_run, **fields})
    return decision


def _decide_in_shadow(version: int, decision: Decision, detail: Any, credit_balance: Any, job_id: str) -> None:
    """Decide again with the shadow version, with no side effect (no probe claimed, no budget charged):
    record what it would have done, count it by rule, keep a disagreement for `table diff`."""
    assert provider_state is not None and engines is not None
    shadow_engine, used = engines.get(version)
    if used != version:
        return  # not usable now: Engines logged and counted it
    shadow = shadow_engine.decide(detail, credit_balance, Availability(provider_state.items()))
    decision["shadow"] = rollout.shadow_summary(version, shadow)
    disagrees = rollout.route_of(shadow) != rollout.route_of(decision)
    _emf([["rule"]], {"ShadowDecisions": 1, "ShadowDisagreements": int(disagrees)},
         {"rule": decision["rule"] or "none", "service": _SERVICE})
    if disagrees:
        try:
            rollout.record_disagreement(provider_state.client, provider_state.table_name, version, job_id,
                                        decision, shadow)
        except Exception as exc:  # the job's own route does not depend on it
            logger.warning("shadow disagreement not recorded", error=type(exc).__name__)
