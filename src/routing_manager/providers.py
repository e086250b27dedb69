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
from routing_core.live import LiveState


def read_items(ddb: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every scope's item now (a strongly consistent read, no cache)."""
    return LiveState(table, client=ddb, max_age=0, strict=True).items()


def status(ddb: Any, table: str, known: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    return Availability(read_items(ddb, table)).scopes(known)


def caller(sts: Any) -> str:
    """Who makes the change, as AWS knows them: the audit trail's `by`."""
    return str(sts.get_caller_identity()["Arn"])


def disable(ddb: Any, events: Any, table: str, bus: str, provider: str, model: str | None, reason: str,
            for_seconds: float | None, by: str) -> dict[str, Any]:
    until = time.time() + for_seconds if for_seconds else None
    detail = control.disable(ddb, table, provider, model, reason, until, by)
    control.record(ddb, events, table, bus, ROUTER_SOURCE, detail)
    return detail


def enable(ddb: Any, events: Any, table: str, bus: str, provider: str, model: str | None, by: str) -> dict[str, Any]:
    detail = control.enable(ddb, table, provider, model, by)
    control.record(ddb, events, table, bus, ROUTER_SOURCE, detail)
    return detail
