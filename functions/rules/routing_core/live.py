"""The control table as the rules Lambda and the outcome counter see it: read at most every
MAX_AGE_SEC (one Query, never a read per job), and the half-open breaker's probe claimed with a
conditional write so that exactly one job, of any number deciding at once, is the probe.

If the table cannot be read the last state read is kept (none: every provider available): an
unreachable control table must not stop routing. boto3 loads at the first read, not at init.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from routing_core.availability import STATE_PK, Availability, plain, split_scope

MAX_AGE_SEC = 2.0  # the staleness the routing decision may have (docs/AVAILABILITY.md)
BUDGET_PK = "budget"  # sk: provider#YYYY-MM-DD (UTC), spentUsd
BUDGET_DAYS_KEPT = 8
logger = logging.getLogger(__name__)


class LiveState:
    """A cached view of one control table."""

    def __init__(self, table_name: str, probe_timeouts: dict[str, float] | None = None,
                 max_age: float = MAX_AGE_SEC, client: Any = None) -> None:
        self.table_name = table_name
        self.probe_timeouts = probe_timeouts or {}  # per provider: the routing table's breaker.probeTimeoutSec
        self.max_age = max_age
        self._client = client
        self._items: dict[str, dict[str, Any]] = {}
        self._read_at = float("-inf")  # time.monotonic() when the last read began
        self.reads = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Well inside the rules function's 8 s: a slow table costs one job a second, not its timeout.
            self._client = boto3.client("dynamodb", config=Config(connect_timeout=1, read_timeout=1,
                                                                  retries={"max_attempts": 2, "mode": "standard"}))
        return self._client

    def items(self) -> dict[str, dict[str, Any]]:
        started = time.monotonic()
        if started - self._read_at >= self.max_age:
            self._read_at = started
            self._items = self._read()
        return self._items

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    def _read(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {
            "TableName": self.table_name, "KeyConditionExpression": "pk = :pk",
            # Strongly consistent: the 2 s bound holds for the read itself, not only the cache.
            "ExpressionAttributeValues": {":pk": {"S": STATE_PK}}, "ConsistentRead": True,
        }
        try:
            while True:
                page = self.client.query(**request)
                self.reads += 1
                for item in page.get("Items", []):
                    values = plain(item)
                    del values["pk"]
                    items[values.pop("sk")] = values
                if "LastEvaluatedKey" not in page:
                    return items
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:  # never stop routing on the control table: keep the last state read
            logger.warning("provider state not read, the last state read is kept: %s", type(exc).__name__)
            return self._items

    def availability(self, may_probe: bool = True) -> Availability:
        """The state now; `may_probe` False (the heartbeat's dry run) never claims a probe or charges a budget."""
        return Availability(self.items(), claim_probe=self.claim_probe if may_probe else _no_probe,
                            charge_budget=self.charge_budget if may_probe else None)

    def claim_probe(self, scope: str, job_id: str) -> bool:
        """True for the one job that may probe a half-open breaker (the same job again, on a restart)."""
        now = time.time()
        item = self._items.get(scope, {})
        if item.get("probeJobId") not in (None, job_id) and (item.get("probeUntil") or 0) > now:
            return False  # a probe is known to be in flight: no write (each failed condition costs one)
        lease = now + self.probe_timeouts.get(split_scope(scope)[0], 900.0)
        try:
            self.client.update_item(
                TableName=self.table_name, Key={"pk": {"S": STATE_PK}, "sk": {"S": scope}},
                UpdateExpression="SET probeJobId = :job, probeUntil = :lease",
                ConditionExpression="breakerOpenUntil <= :now AND (attribute_not_exists(probeUntil) "
                                    "OR probeUntil < :now OR probeJobId = :job)",
                ExpressionAttributeValues={":job": {"S": job_id}, ":now": {"N": repr(now)},
                                           ":lease": {"N": repr(lease)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except Exception as exc:
            response = getattr(exc, "response", {})
            if response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                # Another job is the probe, or the breaker moved on: remember what the table says.
                old = response.get("Item")
                if old:
                    values = plain(old)
                    values.pop("pk", None)
                    self._items[values.pop("sk")] = values
                else:
                    self._items.pop(scope, None)
                return False
            logger.warning("probe not claimed: %s", type(exc).__name__)
            return False
        self._items[scope] = {**item, "probeJobId": job_id, "probeUntil": lease}
        return True


    def charge_budget(self, provider: str, amount: float, limit: float) -> tuple[bool, str]:
        """Add a routed job's quote to the provider's spend today, unless that would pass its daily budget:
        one conditional ADD, so concurrent jobs never spend more than the budget. (charged, budget key or why not)."""
        key = f"{provider}#{time.strftime('%Y-%m-%d', time.gmtime())}"
        if amount > limit:
            return False, f"budget exhausted: the quote ${amount:g} is over the daily ${limit:g}"
        try:
            self.client.update_item(
                TableName=self.table_name, Key={"pk": {"S": BUDGET_PK}, "sk": {"S": key}},
                UpdateExpression="ADD spentUsd :amount SET expiresAt = if_not_exists(expiresAt, :expires)",
                ConditionExpression="attribute_not_exists(spentUsd) OR spentUsd <= :room",
                ExpressionAttributeValues={":amount": {"N": f"{amount:.4f}"}, ":room": {"N": f"{limit - amount:.4f}"},
                                           ":expires": {"N": str(int(time.time()) + BUDGET_DAYS_KEPT * 86400)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except Exception as exc:
            response = getattr(exc, "response", {})
            if response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                spent = response.get("Item", {}).get("spentUsd", {}).get("N", "?")
                return False, f"budget exhausted: ${spent} of the daily ${limit:g} spent"
            # A budget that cannot be checked is not spent: the provider is skipped, never overspent.
            logger.warning("budget not charged: %s", type(exc).__name__)
            return False, "budget exhausted: the spend could not be checked"
        return True, key


def _no_probe(scope: str, job_id: str) -> bool:
    return False
