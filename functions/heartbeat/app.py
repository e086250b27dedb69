"""Heartbeat canary: every 5 minutes, prove the routing path works, then say so.

Publishes `Agent/RoutingManager/Heartbeat` = 1 (namespace VideoJobRouting; the Admin
Dashboard discovers agents by it) only after the rules Lambda decided a canary job in dry-run
and the Jobs table answered. It enqueues nothing, writes no job record and emits no job event;
a failing check raises, so no heartbeat is published and the Lambda's Errors metric counts it.

The canary is decided with the providers' state as jobs are (never claiming a breaker's probe):
a canary no provider can take now still proves the router works, so the heartbeat is published,
and so are `ProviderAvailable` and `ProviderBreakerOpen` (1/0, dimension provider) for every
provider: the breaker-open alarms and the dashboard read them. A decision made with provider state
the rules Lambda could not read ("stale" or "unread") fails the canary: a router that ignores its
kill switches is not working. Every failure also counts `HeartbeatFailures`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

NAMESPACE = os.environ.get("HEARTBEAT_NAMESPACE", "VideoJobRouting")
RULES_FUNCTION = os.environ["RULES_FUNCTION_NAME"]
JOBS_TABLE = os.environ["JOBS_TABLE_NAME"]
METRIC = "Agent/RoutingManager/Heartbeat"
CANARY_KEY = "__routing-manager-heartbeat__"  # a key no job uses: reading it touches no job data
CANARY_JOB = {"jobId": CANARY_KEY, "userId": "heartbeat", "prompt": "heartbeat canary", "lengthSec": 8,
              "resolution": "720p", "provider": "auto"}

lambda_client = boto3.client("lambda")
dynamodb = boto3.client("dynamodb")
cloudwatch = boto3.client("cloudwatch")


class CanaryFailed(RuntimeError):
    """The routing path is not working: no heartbeat."""


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    try:
        return _beat()
    except Exception:
        # The missing heartbeat says it only after its alarm's window; this says it at once, per failure.
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=[
            {"MetricName": "HeartbeatFailures", "Value": 1.0, "Unit": "Count"}])
        raise


def _beat() -> dict[str, Any]:
    response = lambda_client.invoke(FunctionName=RULES_FUNCTION,
                                    Payload=json.dumps({"detail": CANARY_JOB, "dryRun": True}).encode())
    payload = json.loads(response["Payload"].read() or b"null")
    if response.get("FunctionError"):
        error = payload.get("errorType") if isinstance(payload, dict) else None
        raise CanaryFailed(f"rules Lambda failed: {error}")
    if not isinstance(payload, dict) or payload.get("outcome") not in ("route", "unavailable"):
        reason = payload.get("reason") if isinstance(payload, dict) else payload
        raise CanaryFailed(f"canary job was not routed: {reason}")
    if payload.get("liveState") in ("stale", "unread"):  # routing would ignore kill switches and budgets
        raise CanaryFailed(f"the rules Lambda decides with {payload['liveState']} provider state "
                           f"(age {payload.get('liveStateAgeSec')} s): the control table is not read")
    dynamodb.get_item(TableName=JOBS_TABLE, Key={"jobId": {"S": CANARY_KEY}},
                      ProjectionExpression="jobId")
    providers = payload.get("providers") or []
    metric_data: list[dict[str, Any]] = [{"MetricName": METRIC, "Value": 1.0, "Unit": "Count"}]
    for summary in providers:
        dimensions = [{"Name": "provider", "Value": summary["provider"]}]
        metric_data += [
            {"MetricName": "ProviderAvailable", "Dimensions": dimensions, "Value": float(summary["available"])},
            {"MetricName": "ProviderBreakerOpen", "Dimensions": dimensions, "Value": float(summary["breakerOpen"])},
        ]
    cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=metric_data)  # 1 + 2 per provider: within 1,000
    result = {"heartbeat": 1, "outcome": payload["outcome"], "provider": payload["provider"], "rule": payload["rule"],
              "reason": payload.get("reason"), "providers": {s["provider"]: s["states"] for s in providers}}
    print(json.dumps({"message": "heartbeat", **result}))
    return result
