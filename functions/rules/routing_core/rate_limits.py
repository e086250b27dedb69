"""Rate limits held across every rules environment (issue 25): `rateLimits.maxJobsPerMinute` on a provider
of the routing table, and per model under `modelRateLimits`.

One counter per scope and UTC minute in the control table, `pk = "rate"`, `sk = "<scope>#<minute epoch>"`.
A job is admitted by ONE conditional UpdateItem, `ADD admitted 1` only while `admitted < limit`: DynamoDB
checks the condition and adds in one step per item, so however many environments decide at once, at most
`limit` jobs are admitted in a minute (a fixed window: up to 2 x limit across a minute's edge). A job that
needs two counters (provider and model) takes the provider's first and gives it back if the model's is full.
A counter that cannot be checked admits nothing (the candidate is skipped, as a budget that cannot be
checked is): the limit is a promise to the provider.

`rateLimits.maxInFlight` (item 5): one lease item per scope, `pk = "rate"`, `sk = "flight#<scope>"`, holding a map
`leases` of jobId -> lease end (epoch). A job is admitted by ONE conditional UpdateItem, `SET leases.<jobId> =
:until` only while `size(leases) < :max` (or the job already holds a lease: a replayed decision takes no second
slot), so however many environments decide at once the map never holds more than `max` jobs. The job's outcome
(provider_events.py) removes its lease: in flight = routed - finished. A lease whose outcome never arrives ends
after LEASE_SEC: the next admission that finds the map full removes the expired leases (a conditional REMOVE on
their old values) and tries once more, so a lost outcome cannot pin a slot for longer than that.

Nothing is written where nothing is limited: a decision takes a counter or a lease only for a scope the deciding
routing table limits (engine.py), and an outcome removes a lease only in the scopes that the table which decided
its job limits (`in_flight_scopes`, provider_events.py reads the version off the job's record). A table with no
`rateLimits` costs no request at all, on either side.

Plain Python; boto3 comes with the caller's client (live.LiveState's, loaded at the first read).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

RATE_PK = "rate"
KEEP_SEC = 3600  # counters expire (DynamoDB TTL) an hour after their minute
FLIGHT_PREFIX = "flight#"  # sk of a scope's in-flight leases
LEASE_SEC = 3600  # a lease whose outcome never arrives frees its slot after this (stats.IN_FLIGHT_HORIZON_SEC)
logger = logging.getLogger(__name__)


class Limiter:
    def __init__(self, client: Callable[[], Any], table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.table_name = table_name
        self._clock = clock

    def admit(self, scopes: list[tuple[str, int]], flights: list[tuple[str, int]] | None = None,
              job_id: str | None = None) -> str | None:
        """Take one slot of each (scope, jobs per minute), then a lease of each (scope, maxInFlight) for `job_id`;
        None when admitted, else why not (nothing taken)."""
        now = self._clock()
        minute = int(now // 60 * 60)
        taken: list[str] = []
        leased: list[str] = []
        why: str | None = None
        for scope, limit in scopes:
            why = self._take(scope, limit, minute)
            if why is not None:
                break
            taken.append(scope)
        if why is None and job_id is not None:
            for scope, limit in flights or []:
                why = self._lease(scope, limit, job_id, now)
                if why is not None:
                    break
                leased.append(scope)
        if why is None:
            return None
        for done in taken:
            self._give_back(done, minute)
        if leased and job_id is not None:
            release(self._client(), self.table_name, leased, job_id)
        return why

    def release(self, flights: list[str], job_id: str) -> None:
        """Give back the job's leases (the job was admitted, then not routed: its budget refused it)."""
        if flights:
            release(self._client(), self.table_name, flights, job_id)

    def _lease(self, scope: str, limit: int, job_id: str, now: float) -> str | None:
        key = {"pk": {"S": RATE_PK}, "sk": {"S": FLIGHT_PREFIX + scope}}
        values = {":until": {"N": str(int(now) + LEASE_SEC)}, ":max": {"N": str(limit)},
                  ":expires": {"N": str(int(now) + 2 * LEASE_SEC)}}
        shown = scope.replace("#", "/")
        for attempt in range(3):
            try:
                self._client().update_item(
                    TableName=self.table_name, Key=key,
                    UpdateExpression="SET leases.#job = :until, expiresAt = :expires",
                    ConditionExpression="size(leases) < :max OR attribute_exists(leases.#job)",
                    ExpressionAttributeNames={"#job": job_id}, ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD")
                return None
            except Exception as exc:
                response = (getattr(exc, "response", None) or {})
                if response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    leases = (response.get("Item") or {}).get("leases", {}).get("M", {})
                    expired = {job: lease for job, lease in leases.items() if float(lease.get("N", 0)) < now}
                    if attempt < 2 and expired and self._sweep(key, expired):
                        continue
                    return f"rate limited: {limit} jobs in flight at {shown} (maxInFlight)"
                if attempt == 0:  # the scope's first lease: no map to set a key in yet (or created meanwhile)
                    if self._create(key, job_id, values):
                        return None
                    continue
                logger.warning("in-flight limit not checked: %s", type(exc).__name__)
                return "rate limited: the in-flight count could not be checked"
        return f"rate limited: {limit} jobs in flight at {shown} (maxInFlight)"

    def _create(self, key: dict[str, Any], job_id: str, values: dict[str, Any]) -> bool:
        try:
            self._client().update_item(
                TableName=self.table_name, Key=key, UpdateExpression="SET leases = :leases, expiresAt = :expires",
                ConditionExpression="attribute_not_exists(leases)",
                ExpressionAttributeValues={":leases": {"M": {job_id: values[":until"]}},
                                           ":expires": values[":expires"]})
        except Exception:
            return False  # created meanwhile (then the caller tries the lease again), or unreachable
        return True

    def _sweep(self, key: dict[str, Any], expired: dict[str, Any]) -> bool:
        """Remove leases past their end (outcomes lost), each only if unchanged since it was read."""
        names = {f"#e{i}": job for i, job in enumerate(expired)}
        values = {f":e{i}": lease for i, lease in enumerate(expired.values())}
        try:
            self._client().update_item(
                TableName=self.table_name, Key=key, UpdateExpression="REMOVE " + ", ".join(
                    f"leases.{name}" for name in names),
                ConditionExpression=" AND ".join(f"leases.#e{i} = :e{i}" for i in range(len(names))),
                ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except Exception as exc:  # swept by another environment meanwhile: the retry sees the new map
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            return bool(code == "ConditionalCheckFailedException")
        logger.info("in-flight leases expired without an outcome: %d removed", len(names))
        return True

    def _key(self, scope: str, minute: int) -> dict[str, Any]:
        return {"pk": {"S": RATE_PK}, "sk": {"S": f"{scope}#{minute}"}}

    def _take(self, scope: str, limit: int, minute: int) -> str | None:
        try:
            self._client().update_item(
                TableName=self.table_name, Key=self._key(scope, minute),
                UpdateExpression="ADD admitted :one SET expiresAt = if_not_exists(expiresAt, :expires)",
                ConditionExpression="attribute_not_exists(admitted) OR admitted < :limit",
                ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)},
                                           ":expires": {"N": str(minute + 60 + KEEP_SEC)}})
        except Exception as exc:
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return f"rate limited: {limit} jobs a minute admitted to {scope.replace('#', '/')}"
            logger.warning("rate limit not checked: %s", type(exc).__name__)
            return "rate limited: the counter could not be checked"
        return None

    def _give_back(self, scope: str, minute: int) -> None:
        try:
            self._client().update_item(TableName=self.table_name, Key=self._key(scope, minute),
                                       UpdateExpression="ADD admitted :minus",
                                       ExpressionAttributeValues={":minus": {"N": "-1"}})
        except Exception as exc:  # the slot stays taken: fewer jobs admitted, never more
            logger.warning("rate limit slot not given back: %s", type(exc).__name__)


def release(ddb: Any, table_name: str, flights: list[str], job_id: str) -> None:
    """End the job's lease in each scope (its outcome arrived): one REMOVE per scope, idempotent. Raises on an
    error other than "no leases item" (the caller decides whether to retry)."""
    for scope in flights:
        try:
            ddb.update_item(TableName=table_name, Key={"pk": {"S": RATE_PK}, "sk": {"S": FLIGHT_PREFIX + scope}},
                            UpdateExpression="REMOVE leases.#job", ConditionExpression="attribute_exists(leases)",
                            ExpressionAttributeNames={"#job": job_id})
        except Exception as exc:
            if (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


def in_flight_scopes(providers: Mapping[str, Any], provider: str, model: str) -> list[str]:
    """The scopes whose `maxInFlight` a job routed to (provider, model) under this routing table leased: the
    provider's, then the model's; [] when neither is limited."""
    spec = providers.get(provider) or {}
    scopes = [provider] if (spec.get("rateLimits") or {}).get("maxInFlight") else []
    if ((spec.get("modelRateLimits") or {}).get(model) or {}).get("maxInFlight"):
        scopes.append(f"{provider}#{model}")
    return scopes


LIMITER: Limiter | None = None  # set by the rules function (app.py); none: limits are not enforced (explain)


def configure(limiter: Limiter | None) -> None:
    global LIMITER
    LIMITER = limiter
