"""Routing tables that change live: published versions in the control table, and which of them decide.

Items of the control table (docs/ROUTING_TABLES.md):
- `pk = "table"`, `sk = "v#000001"`: a published version: `body` (the table as pydantic normalised it at
  publish, so the rules function builds an engine from it without pydantic), `sha256` of the body, `by`,
  `at`, `note`. Version 0 is the table bundled in the code: never stored, always the fallback.
- `pk = "state"`, `sk = "#table"`: the pointer: `active`, `previous` (active before the last promote),
  `shadow`, `canary` and `canaryPercent`, `rollbackOn` (alarm names), `since`. It lives beside the
  provider state so that the rules function reads it in the same cached Query (at most every 2 s);
  no provider name can start with '#'.

Plain Python: the rules function imports it at cold start. Writes (publish, the pointer) are the CLI's
and the provider events function's; each change is audited and announced as `routing.table.changed`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from routing_core.availability import STATE_PK, iso, query_pages

TABLE_PK = "table"
POINTER_SK = "#table"
CHANGED_DETAIL_TYPE = "routing.table.changed"
SHADOW_PK_PREFIX = "shadow#"  # pk = shadow#N, sk = jobId: a disagreement of version N's shadow decision
SHADOW_DAYS_KEPT = 7
MAX_ENGINES = 8  # parsed tables kept per environment (by sha256)
logger = logging.getLogger(__name__)


def version_key(version: int) -> dict[str, Any]:
    return {"pk": {"S": TABLE_PK}, "sk": {"S": f"v#{version:06d}"}}


def pointer_key() -> dict[str, Any]:
    return {"pk": {"S": STATE_PK}, "sk": {"S": POINTER_SK}}


def canary_bucket(job_id: str) -> int:
    """The job's bucket of 100 for a canary: salted apart from the rules' split, so the two are independent."""
    return int.from_bytes(hashlib.sha256(b"canary\x00" + job_id.encode()).digest()[:8], "big") % 100


def body_of(table: Mapping[str, Any]) -> str:
    """The stored text of a table: canonical JSON, so that its sha256 names its content."""
    return json.dumps(table, sort_keys=True, separators=(",", ":"))


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


class Pointer:
    """Which versions decide: from the `#table` item (absent: version 0 alone)."""

    __slots__ = ("active", "previous", "shadow", "canary", "percent", "rollback_on", "since", "rev")

    def __init__(self, item: Mapping[str, Any] | None = None) -> None:
        item = item or {}
        self.active = int(item.get("active") or 0)
        self.previous = int(item.get("previous") or 0)
        self.shadow: int | None = int(item["shadow"]) if item.get("shadow") is not None else None
        self.canary: int | None = int(item["canary"]) if item.get("canary") is not None else None
        self.percent = float(item.get("canaryPercent") or 0)
        self.rollback_on: list[str] = json.loads(item["rollbackOn"]) if item.get("rollbackOn") else []
        self.since: str | None = item.get("since")
        self.rev = int(item.get("rev") or 0)  # every change adds one: what the next change is conditional on

    def version_for(self, job_id: str) -> tuple[int, str]:
        """(the version that decides this job, its role: active or canary)."""
        if self.canary is not None and canary_bucket(job_id) < self.percent:
            return self.canary, "canary"
        return self.active, "active"

    def status(self) -> dict[str, Any]:
        return {"active": self.active, "shadow": self.shadow,
                "canary": {"version": self.canary, "percent": self.percent} if self.canary is not None else None,
                "since": self.since, "rollbackOn": self.rollback_on, "previous": self.previous}


class Engines:
    """The engine of each version, built once per environment from the stored body (sha256-checked). A
    version that cannot be read or built decides with version 0, and says so (a logged ERROR, a read error
    counted for the control-state alarm): never in silence."""

    def __init__(self, bundled: Any, build: Callable[[dict[str, Any]], Any], client: Callable[[], Any],
                 table_name: str, on_error: Callable[[], None]) -> None:
        self.bundled = bundled
        self._build = build
        self._client = client
        self._table_name = table_name
        self._on_error = on_error
        self._by_version: dict[int, Any] = {0: bundled}
        self._failed_at: dict[int, float] = {}

    def get(self, version: int) -> tuple[Any, int]:
        """(the engine, the version it is: `version`, or 0 when that one cannot be used now)."""
        engine = self._by_version.get(version)
        if engine is not None:
            return engine, version
        if time.monotonic() - self._failed_at.get(version, float("-inf")) < 2.0:
            return self.bundled, 0  # a failed read is retried at most every 2 s, not per job
        try:
            item = self._client().get_item(TableName=self._table_name, Key=version_key(version),
                                           ConsistentRead=True).get("Item")
            if item is None:
                raise LookupError(f"routing table version {version} is not published")
            body = item["body"]["S"]
            if digest(body) != item["sha256"]["S"]:
                raise ValueError(f"routing table version {version}: sha256 does not match its body")
            engine = self._build(json.loads(body))
        except Exception as exc:
            self._failed_at[version] = time.monotonic()
            self._on_error()
            logger.error("routing table version %s not usable (%s: %s): deciding with the bundled table",
                         version, type(exc).__name__, exc)
            return self.bundled, 0
        if len(self._by_version) > MAX_ENGINES:
            self._by_version = {0: self.bundled}
        self._by_version[version] = engine
        return engine, version


def shadow_summary(version: int, decision: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": version, "outcome": decision["outcome"], "provider": decision["provider"],
            "model": decision["model"], "reason": decision["reason"]}


def _attribute(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, Mapping):
        return {"M": {key: _attribute(item) for key, item in value.items()}}
    return {"S": str(value)}


def record_attributes(decision: Mapping[str, Any]) -> dict[str, Any]:
    """The decision's table version and shadow, typed for the job record: the workflow's MarkRouted and
    MarkRejected write them as they are (JSONPath cannot type a value that may be absent)."""
    return {"tableVersion": _attribute(decision.get("tableVersion")), "shadow": _attribute(decision.get("shadow"))}


def route_of(decision: Mapping[str, Any]) -> str:
    """What a decision did, as `table diff` groups it: provider/model, or the reason."""
    if decision.get("provider"):
        return f"{decision['provider']}/{decision['model']}"
    return str(decision.get("reason") or decision.get("outcome"))


def record_disagreement(client: Any, table_name: str, version: int, job_id: str, active: Mapping[str, Any],
                        shadow: Mapping[str, Any]) -> None:
    client.put_item(TableName=table_name, Item={
        "pk": {"S": f"{SHADOW_PK_PREFIX}{version}"}, "sk": {"S": job_id},
        "from": {"S": route_of(active)}, "to": {"S": route_of(shadow)}, "at": {"S": iso(time.time())},
        "expiresAt": {"N": str(int(time.time()) + SHADOW_DAYS_KEPT * 86400)}})


# --- changes (the operator CLI, and the provider events function's alarm-gated rollback) -------------------

class Conflict(Exception):
    """Someone else changed the same item meanwhile: nothing was written; retry."""


def _failed_condition(exc: Exception) -> bool:
    code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
    return bool(code == "ConditionalCheckFailedException")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"


def latest_version(ddb: Any, table_name: str) -> int:
    page = ddb.query(TableName=table_name, KeyConditionExpression="pk = :pk", ScanIndexForward=False, Limit=1,
                     ProjectionExpression="version", ConsistentRead=True,
                     ExpressionAttributeValues={":pk": {"S": TABLE_PK}})
    items = page.get("Items", [])
    return int(items[0]["version"]["N"]) if items else 0


def publish(ddb: Any, table_name: str, table: Mapping[str, Any], by: str, note: str | None) -> dict[str, Any]:
    """Store a validated table as the next version. A conditional write: two publishes racing for the same
    number never both win; the loser raises Conflict."""
    body = body_of(table)
    version = latest_version(ddb, table_name) + 1
    entry = {"version": version, "sha256": digest(body), "by": by, "at": iso(time.time()), "note": note}
    item = {**version_key(version), "version": {"N": str(version)}, "body": {"S": body},
            "sha256": {"S": entry["sha256"]}, "by": {"S": by}, "at": {"S": entry["at"]}}
    if note:
        item["note"] = {"S": note}
    try:
        ddb.put_item(TableName=table_name, Item=item, ConditionExpression="attribute_not_exists(sk)")
    except Exception as exc:
        if _failed_condition(exc):
            raise Conflict(f"version {version} was published by someone else meanwhile") from None
        raise
    return entry


def versions(ddb: Any, table_name: str) -> list[dict[str, Any]]:
    """Every published version, oldest first, without bodies."""
    found: list[dict[str, Any]] = []
    request: dict[str, Any] = {"TableName": table_name, "KeyConditionExpression": "pk = :pk", "ConsistentRead": True,
                               "ProjectionExpression": "version, sha256, #by, #at, note",
                               "ExpressionAttributeNames": {"#by": "by", "#at": "at"},
                               "ExpressionAttributeValues": {":pk": {"S": TABLE_PK}}}
    for page in query_pages(ddb, request):
        found += [{"version": int(item["version"]["N"]), "sha256": item["sha256"]["S"], "by": item["by"]["S"],
                   "at": item["at"]["S"], "note": item.get("note", {}).get("S")} for item in page.get("Items", [])]
    return found


def read_version(ddb: Any, table_name: str, version: int) -> dict[str, Any]:
    item = ddb.get_item(TableName=table_name, Key=version_key(version), ConsistentRead=True).get("Item")
    if item is None:
        raise LookupError(f"routing table version {version} is not published")
    table: dict[str, Any] = json.loads(item["body"]["S"])
    return table


def read_pointer(ddb: Any, table_name: str) -> Pointer:
    """The pointer now (strongly consistent)."""
    item = ddb.get_item(TableName=table_name, Key=pointer_key(), ConsistentRead=True).get("Item") or {}
    return Pointer({key: next(iter(value.values())) for key, value in item.items()})


def change_pointer(ddb: Any, table_name: str, read: Pointer, set_values: Mapping[str, Any],
                   remove: tuple[str, ...] = ()) -> str:
    """Set and remove pointer fields, on condition that nobody changed it since `read`; the new `since`."""
    now = _now()
    names = {f"#{key}": key for key in [*set_values, *remove, "since", "rev"]}
    values: dict[str, Any] = {":now": {"S": now}, ":rev": {"N": str(read.rev + 1)}}
    assignments = ["#since = :now", "#rev = :rev"]
    for key, value in set_values.items():
        values[f":{key}"] = {"S": value} if isinstance(value, str) else {"N": repr(value)}
        assignments.append(f"#{key} = :{key}")
    expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(f"#{k}" for k in remove) if remove else "")
    if read.rev == 0:
        condition = "attribute_not_exists(#rev)"
    else:
        condition, values[":read"] = "#rev = :read", {"N": str(read.rev)}
    try:
        ddb.update_item(TableName=table_name, Key=pointer_key(), UpdateExpression=expression,
                        ConditionExpression=condition, ExpressionAttributeNames=names,
                        ExpressionAttributeValues=values)
    except Exception as exc:
        if _failed_condition(exc):
            raise Conflict("the routing table pointer changed meanwhile") from None
        raise
    return now


def changed(version: int, mode: str, by: str, reason: str | None = None,
            percent: float | None = None) -> dict[str, Any]:
    """The detail of `routing.table.changed`."""
    return {"version": version, "mode": mode, "percent": percent, "by": by, "reason": reason, "ts": _now()}


def end_canary(ddb: Any, table_name: str, alarm: str) -> dict[str, Any] | None:
    """An alarm named by the canary went to ALARM: end the canary (the active version decides alone). The
    change's detail, or None when no canary names that alarm."""
    pointer = read_pointer(ddb, table_name)
    if pointer.canary is None or alarm not in pointer.rollback_on:
        return None
    change_pointer(ddb, table_name, pointer, {}, remove=("canary", "canaryPercent", "rollbackOn"))
    return changed(pointer.canary, "canary_ended", "alarm", reason=f"{alarm} in ALARM")
