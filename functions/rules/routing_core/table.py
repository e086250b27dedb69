"""The routing table schema (pydantic) and its validation with errors that name the entry.

Imported by the rules Lambda only when the table on disk differs from its lock
(see loading.py): pydantic's import alone costs more than the cold-start budget.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routing_core import reasons

_NAME = r"^[a-z][a-z0-9-]{0,31}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LengthRange(_Strict):
    min: float | None = Field(None, ge=reasons.MIN_LENGTH_SEC, le=reasons.MAX_LENGTH_SEC)
    max: float | None = Field(None, ge=reasons.MIN_LENGTH_SEC, le=reasons.MAX_LENGTH_SEC)

    @model_validator(mode="after")
    def _ordered(self) -> LengthRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is greater than max {self.max:g}")
        return self


class When(_Strict):
    """Conditions, all of which must hold. An absent condition does not constrain."""

    lengthSec: LengthRange | None = None
    resolution: list[str] | None = Field(None, min_length=1)
    tier: list[Literal["standard", "premium"]] | None = Field(None, min_length=1)
    audio: bool | None = None
    minCredits: float | None = Field(None, ge=0)
    metadata: dict[str, str] | None = Field(None, min_length=1, max_length=10,
                                            description="the job's metadata holds each of these key/value pairs")


class Route(_Strict):
    provider: str
    model: str | None = Field(None, min_length=1, description="defaults to the provider's defaultModel")


class SplitEntry(Route):
    weight: int = Field(ge=0, le=10000, description="share of jobs, relative to the other entries' weights")


class Rule(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    when: When
    strategy: Literal["order", "cheapest", "fastest", "least-busy", "best-value"] = Field(
        "order", description="order: the first candidate that can take the job; cheapest: the lowest quote among "
                             "them; fastest, least-busy, best-value: ranked by the live statistics "
                             "(docs/ROUTING_STRATEGIES.md)")
    minQuality: float | None = Field(
        None, ge=0, le=1, description="best-value: a job's expected quality (a failure counting 0) below it ranks "
                                      "after those above")
    maxExploration: float | None = Field(
        None, ge=0, le=1, description="best-value: the share of jobs that may go to other than the posterior's best "
                                      "(default 0.1)")
    route: list[Route] | None = Field(None, min_length=1,
                                      description="candidates in order: the first available one is chosen")
    split: list[SplitEntry] | None = Field(
        None, min_length=1, description="in place of route: each job goes to one entry by weight, sticky per jobId; "
                                        "the others stay its fallbacks in weight order")

    @field_validator("route", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _route_or_split(self) -> Rule:
        if (self.route is None) == (self.split is None):
            raise ValueError("give either route or split")
        if self.split is not None and sum(entry.weight for entry in self.split) == 0:
            raise ValueError("split weights sum to 0: no job could be sent")
        return self

    @property
    def candidates(self) -> list[Route]:
        return list(self.route or self.split or [])


class DataPolicy(_Strict):
    """What the provider does with a job's inputs: a job without consent goes only where both are false."""

    retainsInputs: bool = Field(description="keeps inputs after the job beyond a delivery window of 24 hours")
    trainsOnInputs: bool = Field(description="may train models on inputs")
    source: str = Field(min_length=1, description="where the claim was read (a public page)")


class Limits(_Strict):
    maxLengthSec: float | None = Field(None, ge=reasons.MIN_LENGTH_SEC)
    resolutions: list[str] | None = Field(None, min_length=1)
    audio: bool = Field(True, description="whether the provider can produce audio")


class Breaker(_Strict):
    """When a provider's (and model's) circuit breaker opens, and for how long (docs/AVAILABILITY.md)."""

    minRequests: int = Field(5, ge=1, description="outcomes a window must hold before it can open")
    failureRate: float = Field(0.5, gt=0, le=1, description="share of provider failures that opens it")
    windowSec: int = Field(60, ge=10, le=3600)
    cooldownSec: int = Field(30, ge=1, le=3600, description="open this long, then one probe job (half-open)")
    probeTimeoutSec: int = Field(900, ge=10, le=43200,
                                 description="a probe with no outcome after this long lets another probe through")


class Price(_Strict):
    """A model's list price: per second of video by resolution, an audio surcharge, a minimum charge."""

    perSecondUsd: dict[str, float] = Field(min_length=1, description="resolution -> USD per second of video")
    audioPerSecondUsd: float = Field(0, ge=0, description="added per second when the job asks for audio")
    minimumUsd: float = Field(0, ge=0, description="the least a generation is billed")
    source: str = Field(min_length=1, description="where the price was read (a public page)")

    @model_validator(mode="after")
    def _positive(self) -> Price:
        for resolution, price in self.perSecondUsd.items():
            if not price > 0:
                raise ValueError(f"perSecondUsd[{resolution!r}] must be > 0")
        return self


class Tier(_Strict):
    maxQuoteUsd: float | None = Field(None, gt=0, description="a job quoted above it is not routed (over_tier_limit)")
    priority: Literal["urgent", "high", "normal", "low"] = "normal"


class Credits(_Strict):
    creditsPerUsd: float = Field(gt=0, description="credits a user spends per USD of quote")
    exemptTiers: list[Literal["standard", "premium"]] = Field(default_factory=list)


class PriorityQueue(_Strict):
    queue: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="SQS queue name, as recorded and emitted")
    queueUrlEnv: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="environment variable holding its URL")


class RateLimits(_Strict):
    maxJobsPerMinute: int | None = Field(
        None, ge=1, le=1_000_000, description="jobs admitted per UTC minute across every rules environment (an "
                                              "atomic counter)")
    maxInFlight: int | None = Field(
        None, ge=1, le=1_000_000, description="jobs routed and not finished (an atomic lease per job, freed by its "
                                              "outcome or after an hour); also least-busy's denominator")

    @model_validator(mode="after")
    def _one_limit(self) -> RateLimits:
        if self.maxJobsPerMinute is None and self.maxInFlight is None:
            raise ValueError("give maxJobsPerMinute, maxInFlight or both")
        return self


REGION_NAME = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"  # an AWS region name: us-east-1, eu-central-2, us-gov-west-1


class ProviderRegion(_Strict):
    """One region the provider serves from: its own queue, in the router's region (docs/ARCHITECTURE.md,
    "Providers in several regions")."""

    queue: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="SQS queue name, as recorded and emitted")
    queueUrlEnv: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="environment variable holding its URL")
    # Explicit, because a JSON object's key order is not kept everywhere (the lock and published versions
    # are canonical JSON with sorted keys).
    failoverOrder: int = Field(100, ge=1, le=1000, description="regions are tried lowest first (ties by name)")


class Provider(_Strict):
    queue: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="SQS queue name, as recorded and emitted")
    queueUrlEnv: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="environment variable holding the queue URL")
    defaultModel: str = Field(min_length=1)
    enabled: bool = True
    limits: Limits = Limits()
    breaker: Breaker = Breaker()
    prices: dict[str, Price] = Field(default_factory=dict, description="model -> its list price")
    priorityQueues: dict[Literal["urgent", "high", "normal", "low"], PriorityQueue] = Field(
        default_factory=dict, description="a queue of its own for jobs of these priorities (the rest: queue)")
    dailyBudgetUsd: float | None = Field(None, gt=0, description="routed quotes per UTC day may not exceed it "
                                                                 "(an atomic counter; none: no counter, no request)")
    dataPolicy: DataPolicy | None = Field(None, description="none: unknown, treated as retaining inputs")
    rateLimits: RateLimits | None = Field(None, description="the whole provider's rate limit (issue 25)")
    modelRateLimits: dict[str, RateLimits] = Field(default_factory=dict, description="model -> its own rate limit")
    regions: dict[str, ProviderRegion] = Field(
        default_factory=dict, description="region name -> its queue and failoverOrder (none: the provider's one "
                                          "queue, providerRegion \"default\")")
    maxQueueAgeSec: int | None = Field(
        None, ge=60, description="saturated when the queue's oldest message is older (a CloudWatch alarm; >= 60 s, "
                                 "the metric's period)")


class RoutingTable(_Strict):
    version: Literal[1]
    explicitProvider: Literal["strict", "preferred"] = Field(
        "strict", description="strict: a job naming an unavailable provider is not sent elsewhere; preferred: it "
                              "falls back along the rules' candidates")
    pricesReadOn: str | None = Field(None, description="the date the catalog's list prices were read")
    tiers: dict[Literal["standard", "premium"], Tier] = Field(default_factory=dict)
    credits: Credits | None = Field(None, description="quotes checked against the user's balance (Credits table)")
    providers: dict[str, Provider] = Field(min_length=1)
    rules: list[Rule]

    @model_validator(mode="after")
    def _consistent(self) -> RoutingTable:
        import re

        for name in self.providers:
            if not re.match(_NAME, name) or name == "auto":
                raise ValueError(f"provider name {name!r} must be lower-case letters, digits, '-' and not 'auto'")
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            where = f"rules[{index}] ({rule.name})"
            if rule.name in seen:
                raise ValueError(f"{where}: duplicate rule name")
            seen.add(rule.name)
            candidates: set[tuple[str, str | None]] = set()
            kind = "route" if rule.route is not None else "split"
            for position, route in enumerate(rule.candidates):
                if route.provider not in self.providers:
                    known = ", ".join(sorted(self.providers))
                    raise ValueError(f"{where}: {kind}[{position}].provider {route.provider!r} is not a provider "
                                     f"(known: {known})")
                candidate = (route.provider, route.model or self.providers[route.provider].defaultModel)
                if candidate in candidates:
                    raise ValueError(f"{where}: {kind}[{position}] repeats {candidate[0]}/{candidate[1]}")
                candidates.add(candidate)
                if candidate[1] not in self.providers[route.provider].prices:
                    raise ValueError(f"{where}: {kind}[{position}] routes to {candidate[0]}/{candidate[1]}, which has "
                                     "no price (providers.{0}.prices)".format(candidate[0]))
        for name, provider in self.providers.items():
            for region in provider.regions:
                if not re.match(REGION_NAME, region):
                    raise ValueError(f"providers.{name}.regions: {region!r} is not an AWS region name (us-east-1)")
            if provider.regions and provider.priorityQueues:
                raise ValueError(f"providers.{name}: give regions or priorityQueues, not both (a region has one "
                                 "queue)")
            if any("@" in model for model in provider.prices):
                raise ValueError(f"providers.{name}.prices: a model name may not hold '@' (it separates a scope's "
                                 "region)")
            if provider.defaultModel not in provider.prices:
                raise ValueError(f"providers.{name}: defaultModel {provider.defaultModel!r} has no price (an explicit "
                                 "request routes to it)")
        return self


class RoutingTableError(ValueError):
    """The table is unusable; the message names the file and every bad entry."""


def _where(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            parts.append(f"[{key}]")
        else:
            parts.append(f".{key}" if parts else str(key))
        node = node[key] if isinstance(node, (dict, list)) and _has(node, key) else None
        if isinstance(key, int) and isinstance(node, dict) and isinstance(node.get("name"), str):
            parts.append(f" ({node['name']})")
    return "".join(parts) or "(top level)"


def _has(node: Any, key: Any) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


def validate_table(raw: bytes | str | dict[str, Any], source: str = "routing table") -> dict[str, Any]:
    """Validate and normalise a routing table; raise RoutingTableError naming each bad entry."""
    if isinstance(raw, dict):
        data: Any = raw
    else:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RoutingTableError(f"{source}: not valid JSON: {exc}") from None
    try:
        table = RoutingTable.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_where(err['loc'], data)}: {err['msg']}" for err in exc.errors()]
        raise RoutingTableError(f"{source}: invalid routing table:\n  " + "\n  ".join(lines)) from None
    return table.model_dump(mode="json")
