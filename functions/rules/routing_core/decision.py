"""What a decision reads and answers: the job as the rules see it (Job), the Decision the workflow branches on,
the builders of a route, a rejection and an unavailable answer, and the tally that names a rejection when no
candidate is left. Split out of engine.py (which decides); plain Python, imported by the rules function at
cold start.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from routing_core import reasons

_UNSAFE = re.compile(r"[^A-Za-z0-9._:/-]")
_MAX_ECHO = 64
# Unicode White_Space, what the contract's pattern `\S` means (pydantic's regex engine): Python's
# str.strip() also strips the separators U+001C..U+001F, which the contract accepts.
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
               "\u2028\u2029\u202f\u205f\u3000"


class Decision(TypedDict):
    """What the rules Lambda answers and the workflow branches on."""

    outcome: Literal["route", "reject", "unavailable", "read_credits"]
    provider: str | None
    model: str | None
    queue: str | None  # the queue's name, for records and events
    queueUrl: str | None  # where EnqueueJob sends it
    reason: str | None  # a reason code when rejected or unavailable
    rule: str | None  # the rule that decided ("validate" for the contract's checks)
    explanation: list[dict[str, Any]]  # every rule tried, and why it matched or not
    quoteUsd: float | None  # the chosen model's list price for this job (route)
    quoteUsdText: str | None  # the same with 4 decimals: DynamoDB's N and the SQS Number attribute
    priority: str | None  # the user's tier's priority (route): urgent, high, normal or low
    providerRegion: str | None  # route: the provider region sent to ("default": a provider that lists none)
    submittedDetail: NotRequired[str]  # the detail as compact JSON ("" when over the limits)
    userId: NotRequired[str]  # read_credits: whose balance to read
    providers: NotRequired[list[dict[str, Any]]]  # dry run: each provider's availability (by_provider)
    budgetKey: NotRequired[str]  # route: the daily budget item charged with the quote (refunded if not enqueued)
    liveState: NotRequired[str]  # the provider state decided with: fresh, stale or unread (routing_core.live)
    liveStateAgeSec: NotRequired[float | None]  # seconds since its last good read (None: never read)
    tableVersion: NotRequired[int]  # the routing table version that decided (0: the bundled one; rollout.py)
    shadow: NotRequired[dict[str, Any]]  # what the shadow version would have decided (rollout.shadow_summary)
    recordAttributes: NotRequired[dict[str, Any]]  # tableVersion and shadow as DynamoDB values, for the job record


class Job:
    """The inputs a rule may look at, taken once from the submitted detail."""

    __slots__ = ("length", "resolution", "tier", "tier_policy", "audio", "credits", "metadata")

    def __init__(self, length: float | None, detail: Mapping[str, Any], credits: Any) -> None:
        self.length = length
        resolution = detail.get("resolution")
        self.resolution = resolution if isinstance(resolution, str) else None
        tier = detail.get("tier")
        self.tier = tier if isinstance(tier, str) else None
        self.tier_policy = self.tier if self.tier in ("standard", "premium") else "standard"  # the contract's default
        feature = detail.get("feature")
        audio = feature.get("audio") if isinstance(feature, dict) else None
        self.audio = audio if isinstance(audio, bool) else None
        self.credits = credit_balance(credits)
        metadata = detail.get("metadata")
        self.metadata: Mapping[str, str] = metadata if isinstance(metadata, dict) else {}


def credit_balance(value: Any) -> float | None:
    """A number, or the text of DynamoDB's N type as the workflow passes it; else unknown."""
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def echo(value: Any) -> str:
    """A user-supplied value made safe to put in a reason code, record and event."""
    text = value if isinstance(value, str) else repr(value)
    return _UNSAFE.sub("?", text[:_MAX_ECHO]) or "?"


# Filters a job's own preferences apply: a job they leave without a candidate is preferences_unsatisfiable.
_PREFERENCE_FILTERS = frozenset({"allowFallbacks", "only", "ignore", "consent", "regions"})


class Tally:
    """Why candidates were dropped, across the rules tried: it names the rejection when none is left."""

    __slots__ = ("held_back", "over_limit", "cheapest_over_price", "by_preferences", "rate_limited", "region_out")

    def __init__(self) -> None:
        self.held_back = False  # a candidate that fits the job is unavailable now (or its budget spent)
        self.over_limit = False  # ... or the user's tier may not pay for it
        self.cheapest_over_price: float | None = None  # ... or the job's maxPriceUsd is under its quote
        self.by_preferences = False  # ... or the job's own preferences dropped it
        self.rate_limited = False  # ... or its provider's or model's rate limit is full this minute
        self.region_out = False  # ... or every provider region the job allows is out now

    def count(self, dropped: str | None, quote: float) -> None:
        if dropped in ("availability", "budget"):
            self.held_back = True
        elif dropped == "rateLimit":
            self.rate_limited = True
        elif dropped == "region":
            self.region_out = True
        elif dropped == "tier":
            self.over_limit = True
        elif dropped == "maxPrice":
            self.cheapest_over_price = quote if self.cheapest_over_price is None else min(quote,
                                                                                          self.cheapest_over_price)
        elif dropped in _PREFERENCE_FILTERS:
            self.by_preferences = True


def candidate(provider: str, model: str, quote: float, dropped: str | None, why: str | None) -> dict[str, Any]:
    return {"provider": provider, "model": model, "quoteUsd": quote, "skipped": why, "droppedBy": dropped}


def route(name: str, provider: Mapping[str, Any], model: str, rule: str,
           explanation: list[dict[str, Any]], why: str | None = None) -> Decision:
    if why is not None:
        explanation.append({"rule": rule, "matched": True, "why": why})
    if not provider["queueUrl"]:
        return reject(reasons.QUEUE_NOT_CONFIGURED_PREFIX + name, rule, explanation,
                       f"no queue URL configured for {name}")
    return {"outcome": "route", "provider": name, "model": model, "queue": provider["queue"],
            "queueUrl": provider["queueUrl"], "reason": None, "rule": rule, "explanation": explanation,
            "quoteUsd": None, "quoteUsdText": None, "priority": None, "providerRegion": None}


def reject(reason: str, rule: str | None, explanation: list[dict[str, Any]], why: str | None,
            outcome: Literal["reject", "unavailable"] = "reject") -> Decision:
    if why is not None:
        explanation.append({"rule": rule, "matched": False, "why": why})
    return {"outcome": outcome, "provider": None, "model": None, "queue": None, "queueUrl": None,
            "reason": reason, "rule": rule, "explanation": explanation, "quoteUsd": None, "quoteUsdText": None,
            "priority": None, "providerRegion": None}


def unavailable(reason: str, rule: str | None, explanation: list[dict[str, Any]], why: str | None) -> Decision:
    """No candidate may take the job now: recorded FAILED and replayable, never enqueued."""
    return reject(reason, rule, explanation, why, outcome="unavailable")
