"""Changes to the control table, each audited and announced: the kill switch (the operator CLI), the
circuit breaker and the queue-age alarm (provider_events.py). One place writes these items.

A change is kept as an audit item (`pk = "audit"`, kept a year) and published as
`routing.provider.changed` from `routing.manager`: who, when, why, until when.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from routing_core.availability import STATE_PK, iso, scope, split_scope

AUDIT_PK = "audit"
AUDIT_DAYS = 400
CHANGED_DETAIL_TYPE = "routing.provider.changed"


def _key(scope_name: str) -> dict[str, Any]:
    return {"pk": {"S": STATE_PK}, "sk": {"S": scope_name}}


def change(scope_name: str, state: str, what: str, by: str, reason: str | None = None,
           until: float | None = None, now: float | None = None) -> dict[str, Any]:
    provider, model, region = split_scope(scope_name)
    return {"provider": provider, "model": model, "providerRegion": region, "state": state, "change": what,
            "reason": reason, "until": iso(until), "by": by, "ts": iso(time.time() if now is None else now)}


def disable(ddb: Any, table: str, provider: str, model: str | None, reason: str, until: float | None,
            by: str, region: str | None = None) -> dict[str, Any]:
    now = time.time()
    values: dict[str, Any] = {":reason": {"S": reason}, ":by": {"S": by}, ":at": {"N": repr(now)}}
    expression = "SET disabledReason = :reason, disabledBy = :by, disabledAt = :at"
    if until is None:
        expression += " REMOVE disabledUntil"
    else:
        expression += ", disabledUntil = :until"
        values[":until"] = {"N": repr(until)}
    ddb.update_item(TableName=table, Key=_key(scope(provider, model, region)), UpdateExpression=expression,
                    ExpressionAttributeValues=values)
    return change(scope(provider, model, region), "disabled", "disabled", by, reason, until, now)


def enable(ddb: Any, table: str, provider: str, model: str | None, by: str,
           region: str | None = None) -> dict[str, Any]:
    ddb.update_item(TableName=table, Key=_key(scope(provider, model, region)),
                    UpdateExpression="REMOVE disabledReason, disabledUntil, disabledBy, disabledAt")
    return change(scope(provider, model, region), "available", "enabled", by)


def record(ddb: Any, events: Any, table: str, bus: str, source: str, detail: dict[str, Any],
           detail_type: str = CHANGED_DETAIL_TYPE) -> None:
    """Keep the change in the audit trail and announce it (a provider's change, or a routing table's)."""
    expires = int(time.time()) + AUDIT_DAYS * 86400
    ddb.put_item(TableName=table, Item={
        "pk": {"S": AUDIT_PK}, "sk": {"S": f"{detail['ts']}#{uuid.uuid4().hex[:12]}"},
        "detail": {"S": json.dumps(detail)}, "expiresAt": {"N": str(expires)}})
    result = events.put_events(Entries=[{"Source": source, "DetailType": detail_type,
                                         "Detail": json.dumps(detail), "EventBusName": bus}])
    if result.get("FailedEntryCount"):
        entry = result["Entries"][0]
        raise RuntimeError(f"{detail_type} not published: {entry.get('ErrorCode')}")


def audit_trail(ddb: Any, table: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest changes first."""
    page = ddb.query(TableName=table, KeyConditionExpression="pk = :pk", ScanIndexForward=False, Limit=limit,
                     ExpressionAttributeValues={":pk": {"S": AUDIT_PK}})
    return [json.loads(item["detail"]["S"]) for item in page.get("Items", [])]
