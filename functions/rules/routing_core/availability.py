"""Provider availability: whether a provider (and model) may take a job now, and why not.

The control table (ProviderStateTable) holds one item per scope, `pk = "state"`, `sk = provider` or
`provider#model`, each also per provider region as `provider@region` and `provider#model@region`
(a provider that serves from several regions, issue 26): the kill switch (`disabledReason`,
`disabledUntil`), the circuit breaker (`breakerOpenUntil`, `breakerReason`, `probeJobId`,
`probeUntil`, `closedAt`) and backpressure (`saturated`). Times are epoch seconds. This module
only reads items: the rules Lambda (live.py), the outcome counter (provider_events.py), `explain`
and `provider status` share it.

Plain Python: the rules Lambda imports it at cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

State = Literal["available", "disabled", "open", "half_open", "saturated"]
STATES: tuple[State, ...] = ("available", "disabled", "open", "half_open", "saturated")
STATE_PK = "state"
# A scope that blocks outranks one that only asks for a probe: a disabled provider takes no probe.
BLOCKING: tuple[State, ...] = ("disabled", "open", "saturated")

Item = Mapping[str, Any]


def scope(provider: str, model: str | None = None, region: str | None = None) -> str:
    where = provider if model is None else f"{provider}#{model}"
    return where if region is None else f"{where}@{region}"


def split_scope(text: str) -> tuple[str, str | None, str | None]:
    """(provider, model, provider region): '@' never occurs in a model name of the routing table, and a region
    is the last part (table.py checks both)."""
    where, at, region = text.rpartition("@")
    provider, _, model = (where if at else text).partition("#")
    return provider, model or None, (region or None) if at else None


def iso(epoch: float | None) -> str | None:
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def plain(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A DynamoDB item (attribute-value form) as Python values: the few types the control table uses."""
    values: dict[str, Any] = {}
    for key, typed in item.items():
        (kind, value), = typed.items()
        values[key] = float(value) if kind == "N" else None if kind == "NULL" else value
    return values


def query_pages(ddb: Any, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every page of a DynamoDB Query (a page holds at most 1 MB), following LastEvaluatedKey."""
    request = dict(request)
    while True:
        page = ddb.query(**request)
        yield page
        if "LastEvaluatedKey" not in page:
            return
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def state_of(item: Item | None, now: float) -> tuple[State, str | None, float | None]:
    """(state, reason, until) of one scope's item at `now`."""
    if not item:
        return "available", None, None
    if item.get("disabledReason") is not None:
        until = item.get("disabledUntil")
        if until is None or until > now:  # a timed disable expires by itself
            return "disabled", item["disabledReason"], until
    open_until = item.get("breakerOpenUntil")
    if open_until is not None:
        if open_until > now:
            return "open", item.get("breakerReason"), open_until
        return "half_open", item.get("breakerReason"), item.get("probeUntil")
    if item.get("saturated") is True:
        return "saturated", item.get("saturatedReason") or "queue saturated", None
    return "available", None, None


def describe(state: State, reason: str | None, until: float | None) -> str:
    """Why a candidate was skipped, as the decision's explanation says it."""
    if state == "disabled":
        return f"disabled: {reason or 'no reason given'}" + (f" (until {iso(until)})" if until else "")
    if state == "open":
        return f"breaker open until {iso(until)}" + (f" ({reason})" if reason else "")
    if state == "saturated":
        return "queue saturated"
    if state == "half_open":
        return "breaker half-open: a probe job is in flight"
    return "available"


class Availability:
    """The provider states at one moment. `claim_probe` decides who is a half-open breaker's one probe:
    here (explain, a given state) the job asking would be; live.py claims it in DynamoDB."""

    def __init__(self, items: Mapping[str, Item], now: float | None = None,
                 claim_probe: Callable[[str, str], bool] | None = None,
                 charge_budget: Callable[[str, float, float], tuple[bool, str]] | None = None,
                 stats: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
                 stats_note: str | None = None, quality_model: Mapping[str, Any] | None = None) -> None:
        self.items = items
        self.quality_model = quality_model  # routing_core.quality's fitted model (None: none yet)
        self.stats = stats  # (provider, model) -> its statistics (stats.summarise); None: not read (strategies.py)
        self.stats_note = stats_note  # why the statistics may be old or missing, for the explanation
        self.now = time.time() if now is None else now
        self._claim_probe = claim_probe
        self.charge_budget = charge_budget  # live.py's: None where nothing is spent (explain, a dry run)

    def candidate(self, provider: str, model: str, region: str | None = None
                  ) -> tuple[State, str | None, float | None, str]:
        """The candidate's state: the provider's and the model's scopes, the more blocking one; with a provider
        region, theirs in that region instead (regions.py checks both)."""
        found: list[tuple[State, str | None, float | None, str]] = []
        keys = [scope(provider, None, region), scope(provider, model, region)]
        for key in keys:
            state, reason, until = state_of(self.items.get(key), self.now)
            if state != "available":
                found.append((state, reason, until, key))
        for wanted in (*BLOCKING, "half_open"):
            for entry in found:
                if entry[0] == wanted:
                    return entry
        return "available", None, None, scope(provider, model, region)

    def check(self, provider: str, model: str, job_id: str, region: str | None = None) -> tuple[bool, str | None]:
        """(may take the job, why not or a note): everywhere, or in one of the provider's regions."""
        state, reason, until, key = self.candidate(provider, model, region)
        if state == "available":
            return True, None
        if state == "half_open" and (self._claim_probe is None or self._claim_probe(key, job_id)):
            return True, "the half-open breaker's probe job"
        return False, describe(state, reason, until)

    def scopes(self, known: Iterable[tuple[str, str | None] | tuple[str, str | None, str | None]]
               ) -> list[dict[str, Any]]:
        """One line per scope (the known ones and any in the table): what `provider status` prints."""
        keys = {scope(*entry) for entry in known} | set(self.items)
        lines = []
        for key in sorted(keys):
            provider, model, region = split_scope(key)
            state, reason, until = state_of(self.items.get(key), self.now)
            lines.append({"provider": provider, "model": model, "providerRegion": region, "state": state,
                          "reason": reason, "until": iso(until)})
        return lines


def by_provider(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per provider, from `scopes()` lines: available (the provider and at least one of its models can take
    a job; a provider region out is failed over, so only the region-less scopes count) and breakerOpen (a
    breaker of it is open or half-open, in any region). What the heartbeat publishes."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for line in lines:
        grouped.setdefault(line["provider"], []).append(line)
    usable = ("available", "half_open")
    summary = []
    for provider, scoped in sorted(grouped.items()):
        everywhere = [line for line in scoped if line.get("providerRegion") is None]
        whole = [line["state"] for line in everywhere if line["model"] is None]
        models = [line["state"] for line in everywhere if line["model"] is not None]
        available = all(state in usable for state in whole) and (not models or any(s in usable for s in models))
        summary.append({"provider": provider, "available": available,
                        "breakerOpen": any(line["state"] in ("open", "half_open") for line in scoped),
                        "states": {scope(line["provider"], line["model"], line.get("providerRegion")): line["state"]
                                   for line in scoped}})
    return summary


def items_from_status(lines: Iterable[Mapping[str, Any]], now: float) -> dict[str, dict[str, Any]]:
    """The items behind `provider status --json` lines: `explain --state FILE` reads what status printed."""
    from datetime import datetime

    items: dict[str, dict[str, Any]] = {}
    for line in lines:
        state, reason = line.get("state"), line.get("reason")
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
        until_text = line.get("until")
        until = datetime.fromisoformat(until_text.replace("Z", "+00:00")).timestamp() if until_text else None
        item = items.setdefault(scope(line["provider"], line.get("model"), line.get("providerRegion")), {})
        if state == "disabled":
            item.update(disabledReason=reason or "disabled", disabledUntil=until)
        elif state == "open":
            item.update(breakerOpenUntil=until or now + 30, breakerReason=reason)
        elif state == "half_open":
            item.update(breakerOpenUntil=now, breakerReason=reason)
        elif state == "saturated":
            item.update(saturated=True)
    return items
