"""Provider availability for operators: read the deployed control table, flip the kill switch.

The writes are routing_core.control's (the same the provider events function makes), so an
operator's change is audited and announced like the breaker's.
"""

from __future__ import annotations

import time
from typing import Any

from routing_core import control
from routing_core.availability import Availability
from routing_core.contract import ROUTER_SOURCE
from routing_core.live import BUDGET_PK, LiveState

# The heartbeat's canary job: the detail of the dry run the heartbeat sends the rules function, and the
# one `provider disable|enable --wait` sends to see the deployed function decide with the change. It
# must match CANARY_JOB in functions/heartbeat/app.py (not imported: that module makes boto3 clients at
# import); tests/unit/test_cli_wait.py checks that the two are equal.
CANARY_KEY = "__routing-manager-heartbeat__"  # a key no job uses
CANARY_JOB: dict[str, Any] = {"jobId": CANARY_KEY, "userId": "heartbeat", "prompt": "heartbeat canary",
                              "lengthSec": 8, "resolution": "720p", "provider": "auto"}


def read_items(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every scope's item now (a strongly consistent read, no cache)."""
    return LiveState(table, client=ddb, max_age=0, strict=True).items()


def budget_peek(ddb: Any, table: str) -> Any:
    """A charge_budget for `explain --live`: says whether today's spend leaves room for the quote, as the
    rules Lambda's conditional ADD would, and writes nothing."""
    def peek(provider: str, amount: float, limit: float) -> tuple[bool, str]:
        key = f"{provider}#{time.strftime('%Y-%m-%d', time.gmtime())}"
        item = ddb.get_item(TableName=table, Key={"pk": {"S": BUDGET_PK}, "sk": {"S": key}},
                            ConsistentRead=True).get("Item", {})
        spent = float(item.get("spentUsd", {}).get("N", "0"))
        if amount > limit:
            return False, f"budget exhausted: the quote ${amount:g} is over the daily ${limit:g}"
        if spent + amount > limit:
            return False, f"budget exhausted: ${spent:g} of the daily ${limit:g} spent"
        return True, key
    return peek


def status(ddb: Any, table: str, known: list[tuple[str, str | None, str | None]]) -> list[dict[str, Any]]:
    return Availability(read_items(ddb, table)).scopes(known)


def caller(sts: Any) -> str:
    """Who makes the change, as AWS knows them: the audit trail's `by`."""
    return str(sts.get_caller_identity()["Arn"])


def disable(ddb: Any, events: Any, table: str, bus: str, provider: str, model: str | None, reason: str,
            for_seconds: float | None, by: str, region: str | None = None) -> dict[str, Any]:
    until = time.time() + for_seconds if for_seconds else None
    detail = control.disable(ddb, table, provider, model, reason, until, by, region)
    control.record(ddb, events, table, bus, ROUTER_SOURCE, detail)
    return detail


def enable(ddb: Any, events: Any, table: str, bus: str, provider: str, model: str | None, by: str,
           region: str | None = None) -> dict[str, Any]:
    detail = control.enable(ddb, table, provider, model, by, region)
    control.record(ddb, events, table, bus, ROUTER_SOURCE, detail)
    return detail
