"""The control table as the rules Lambda and the outcome counter see it: read at most every
MAX_AGE_SEC (one Query, never a read per job), and the half-open breaker's probe claimed with a
conditional write so that exactly one job, of any number deciding at once, is the probe.

If the table cannot be read the last state read is kept (none: every provider available), so that
routing goes on, but never in silence: `freshness()` says the state is "stale" or "unread" (every
decision carries it, and the heartbeat canary fails on it), each failed read is counted for the
`ControlStateReadErrors` metric, and an ERROR is logged at the first failure of an environment and
then at most once a minute. boto3 loads at the first read, not at init.

With `read_stats` (the rules function) the same cached read also Queries the live statistics of the last
STATS_SPAN_SEC (`pk = "stats" AND sk >= <bucket>`, routing_core.stats) for the strategies. A failed
statistics read keeps the last statistics, and is just as loud: counted in `read_errors`, logged as an
ERROR (the first, then once a minute), and `stats_note()` puts it in every ranked decision's explanation.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from routing_core import quality
from routing_core import stats as live_stats
from routing_core.availability import STATE_PK, Availability, plain, query_pages, split_scope

MAX_AGE_SEC = 2.0  # the staleness the routing decision may have (docs/AVAILABILITY.md)
ERROR_LOG_EVERY_SEC = 60.0  # an unreadable table is logged at its first failure, then once a minute
BUDGET_PK = "budget"  # sk: provider#YYYY-MM-DD (UTC), spentUsd
BUDGET_DAYS_KEPT = 8
STATS_SPAN_SEC = 3 * 3600  # the statistics the strategies read: 36 five-minute buckets per model
logger = logging.getLogger(__name__)


class LiveState:
    """A cached view of one control table."""

    def __init__(self, table_name: str, probe_timeouts: dict[str, float] | None = None,
                 max_age: float = MAX_AGE_SEC, client: Any = None, strict: bool = False,
                 clock: Any = time.monotonic, read_stats: bool = False, wall_clock: Any = time.time) -> None:
        self.table_name = table_name
        self.probe_timeouts = probe_timeouts or {}  # per provider: the routing table's breaker.probeTimeoutSec
        self.max_age = max_age
        self.strict = strict  # raise when the table cannot be read (the CLI), rather than keep the last state
        self._client = client
        self._clock = clock
        self._items: dict[str, dict[str, Any]] = {}
        self._read_at = float("-inf")  # clock() when the last read began
        self._read_ok_at: float | None = None  # clock() when the last successful read began
        self._error_logged_at = float("-inf")
        self.started_at = clock()
        self.reads = 0
        self.read_stats = read_stats
        self._wall_clock = wall_clock
        self._stats: dict[tuple[str, str], dict[str, Any]] | None = None  # None: never read
        self.quality_model: dict[str, Any] | None = None  # routing_core.quality's fit, read with the statistics
        self._stats_ok_at: float | None = None
        self._stats_error: str | None = None  # the last statistics read's failure, until one succeeds
        self._stats_error_logged_at = float("-inf")
        self.read_errors = 0  # failed reads, all told; take_read_errors() hands them to the metric
        self._reported = 0

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
        started = self._clock()
        if started - self._read_at >= self.max_age:
            self._read_at = started
            self._items = self._read(started)
            if self.read_stats:
                self._read_statistics(started)
        return self._items

    def _read_statistics(self, started: float) -> None:
        try:
            now = self._wall_clock()
            items = live_stats.read(self.client, self.table_name, now, STATS_SPAN_SEC)
            # The fitted quality model rides in the same Query (its sk sorts after every bucket).
            self.quality_model = quality.parse(next((i for i in items if i["sk"]["S"] == quality.MODEL_SK), None))
            lines = live_stats.summarise(items, now)
        except Exception as exc:  # the strategies go on with the last statistics read, and say so
            if self.strict:
                raise
            self.read_errors += 1
            self._stats_error = type(exc).__name__
            if started - self._stats_error_logged_at >= ERROR_LOG_EVERY_SEC:
                self._stats_error_logged_at = started
                logger.error("live statistics in %s not read (%s): strategies rank with %s", self.table_name,
                             self._stats_error, self.stats_note())
            return
        self._stats = {(line["provider"], line["model"]): line for line in lines}
        self._stats_ok_at, self._stats_error = started, None

    def stats_note(self) -> str | None:
        """Why the statistics may mislead (None: read within the cache bound), for the explanation."""
        if self._stats_ok_at is None:
            return f"statistics unread ({self._stats_error or 'no read yet'}): no statistics"
        age = self._clock() - self._stats_ok_at
        if self._stats_error is None and age <= self.max_age:
            return None
        return f"statistics stale ({self._stats_error or 'not refreshed'}): last read {age:.1f} s ago"

    def freshness(self) -> dict[str, Any]:
        """How old the state the decisions use is: "fresh" (read within the cache bound), "stale" (the
        last good read is older: refreshing failed since), or "unread" (no read has succeeded yet)."""
        if self._read_ok_at is None:
            return {"liveState": "unread", "liveStateAgeSec": None}
        age = self._clock() - self._read_ok_at
        return {"liveState": "fresh" if age <= self.max_age else "stale", "liveStateAgeSec": round(age, 1)}

    def take_read_errors(self) -> int:
        """The failed reads since the last call (for a Count metric)."""
        errors = self.read_errors - self._reported
        self._reported = self.read_errors
        return errors

    def note_read_error(self) -> None:
        """A read of the control table made elsewhere (a published routing table) failed: counted alike."""
        self.read_errors += 1

    def invalidate(self) -> None:
        self._read_at = float("-inf")

    def _read(self, started: float) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {
            "TableName": self.table_name, "KeyConditionExpression": "pk = :pk",
            # Strongly consistent: the 2 s bound holds for the read itself, not only the cache.
            "ExpressionAttributeValues": {":pk": {"S": STATE_PK}}, "ConsistentRead": True,
        }
        try:
            for page in query_pages(self.client, request):
                self.reads += 1
                for item in page.get("Items", []):
                    values = plain(item)
                    del values["pk"]
                    items[values.pop("sk")] = values
            self._read_ok_at = started
            return items
        except Exception as exc:  # routing goes on with the last state read, and says so
            if self.strict:
                raise
            self.read_errors += 1
            if started - self._error_logged_at >= ERROR_LOG_EVERY_SEC:
                self._error_logged_at = started
                freshness = self.freshness()
                logger.error("control table %s not read (%s): deciding with %s provider state (age %s s); "
                             "kill switches, breakers and budgets may be ignored", self.table_name,
                             type(exc).__name__, freshness["liveState"], freshness["liveStateAgeSec"])
            return self._items

    def availability(self, may_probe: bool = True) -> Availability:
        """The state now; `may_probe` False (the heartbeat's dry run) never claims a probe or charges a budget."""
        items = self.items()
        return Availability(items, claim_probe=self.claim_probe if may_probe else _no_probe,
                            charge_budget=self.charge_budget if may_probe else None,
                            stats=self._stats, stats_note=self.stats_note() if self.read_stats else None,
                            quality_model=self.quality_model)

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
            response = (getattr(exc, "response", None) or {})
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
            response = (getattr(exc, "response", None) or {})
            if response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                spent = response.get("Item", {}).get("spentUsd", {}).get("N", "?")
                return False, f"budget exhausted: ${spent} of the daily ${limit:g} spent"
            # A budget that cannot be checked is not spent: the provider is skipped, never overspent.
            logger.warning("budget not charged: %s", type(exc).__name__)
            return False, "budget exhausted: the spend could not be checked"
        return True, key


def _no_probe(scope: str, job_id: str) -> bool:
    return False
