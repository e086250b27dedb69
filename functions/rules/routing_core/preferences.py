"""A job's own say in its route: the contract's `routing`, `consent` and `metadata`, read by hand.

Plain Python because the rules Lambda imports it at cold start; the pydantic models in contract.py
describe the same shape (a property test checks the two agree), and `known` adds what only the
routing table can tell: whether a provider or model named in a list exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

ROUTING_FIELDS = ("order", "only", "ignore", "allowFallbacks", "sort", "maxPriceUsd", "regions", "residency")
# residency -> the prefix of the AWS region names it allows (docs/EVENT_SCHEMA.md, "Regions and residency")
RESIDENCIES = {"eu": "eu-", "us": "us-"}
SORTS = ("price", "latency", "quality")  # latency: fastest first, quality: best-value (routing_core.strategies)
MAX_SELECTORS = 20  # entries per list: bounds a decision's work
MAX_METADATA_KEYS = 10
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 256
MAX_CACHED = 256  # parsed lists kept per engine

Selector = tuple[str, "str | None"]  # (provider, model or None for any of its models)


class Preferences:
    """The job's preferences, parsed; `None` fields do not constrain."""

    __slots__ = ("order", "only", "ignore", "fallbacks", "sort", "max_price", "consent", "given", "regions",
                 "residency")

    def __init__(self) -> None:
        self.order: list[Selector] | None = None
        self.only: frozenset[Selector] | None = None
        self.ignore: frozenset[Selector] | None = None
        self.fallbacks = True
        self.sort: str | None = None
        self.max_price: float | None = None
        self.consent: bool | None = None  # consent.consentGiven; None: not stated (no filter)
        self.given = False  # whether the job carried a `routing` object at all
        self.regions: tuple[str, ...] | None = None  # provider regions allowed (routing.regions, residency)
        self.residency: str | None = None  # eu or us: the router itself must run there too


def matches(selectors: frozenset[Selector], provider: str, model: str) -> bool:
    return (provider, None) in selectors or (provider, model) in selectors


def _number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _selectors(field: str, value: Any, known: Mapping[str, frozenset[str]],
               cache: dict[Any, list[Selector]] | None) -> list[Selector]:
    """The list's selectors; a list seen before (frontends send the same preferences job after job) is parsed
    once per environment."""
    if cache is None or not isinstance(value, list):
        return _parse_selectors(field, value, known)
    try:
        key = (field, tuple(value))
        found = cache.get(key)
    except TypeError:  # an unhashable entry: malformed, and parsing says how
        return _parse_selectors(field, value, known)
    if found is None:
        found = _parse_selectors(field, value, known)
        if len(cache) >= MAX_CACHED:
            cache.clear()
        cache[key] = found
    return found


def _parse_selectors(field: str, value: Any, known: Mapping[str, frozenset[str]]) -> list[Selector]:
    if not isinstance(value, list):
        raise ValueError(f"routing.{field} must be a list of \"provider\" or \"provider/model\"")
    if len(value) > MAX_SELECTORS:
        raise ValueError(f"routing.{field} has {len(value)} entries, over {MAX_SELECTORS}")
    selectors: list[Selector] = []
    for index, entry in enumerate(value):
        where = f"routing.{field}[{index}]"
        if not isinstance(entry, str) or not entry:
            raise ValueError(f"{where} must be \"provider\" or \"provider/model\"")
        provider, slash, model = entry.partition("/")  # model names hold '/' themselves (minimax/video-01)
        if slash and not model:
            raise ValueError(f"{where} must be \"provider\" or \"provider/model\"")
        models = known.get(provider)
        if models is None:
            raise ValueError(f"{where}: unknown provider (known: {', '.join(sorted(known))})")
        if model and model not in models:
            raise ValueError(f"{where}: {provider} has no model of that name (known: {', '.join(sorted(models))})")
        selectors.append((provider, model or None))
    return selectors


def known_names(table: Mapping[str, Any]) -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """What a job's `routing` may name, from a routing table: provider -> its priced models, and every
    provider region. The engine and `publish`'s check both take them from here."""
    providers = table["providers"]
    return ({name: frozenset(spec.get("prices", {})) for name, spec in providers.items()},
            frozenset(region for spec in providers.values() for region in spec.get("regions") or {}))


def parse(detail: Mapping[str, Any], known: Mapping[str, frozenset[str]],
          cache: dict[Any, list[Selector]] | None = None, regions: frozenset[str] = frozenset()) -> Preferences | None:
    """The preferences, or None when the job states none; ValueError naming the field when malformed.
    `known`: provider -> the models it has a price for; `regions`: every region a provider serves from."""
    routing, consent = detail.get("routing"), detail.get("consent")
    if routing is None and consent is None:
        return None
    prefs = Preferences()
    if routing is not None:
        if not isinstance(routing, dict):
            raise ValueError("routing must be an object")
        for key in routing:
            if key not in ROUTING_FIELDS:
                raise ValueError(f"routing.{_shown(key)}: unknown field (known: {', '.join(ROUTING_FIELDS)})")
        prefs.given = True
        if routing.get("order") is not None:
            prefs.order = _selectors("order", routing["order"], known, cache)
        if routing.get("only") is not None:
            prefs.only = frozenset(_selectors("only", routing["only"], known, cache))
        if routing.get("ignore") is not None:
            prefs.ignore = frozenset(_selectors("ignore", routing["ignore"], known, cache))
        fallbacks = routing.get("allowFallbacks")
        if fallbacks is not None:
            if not isinstance(fallbacks, bool):
                raise ValueError("routing.allowFallbacks must be true or false")
            prefs.fallbacks = fallbacks
        sort = routing.get("sort")
        if sort is not None:
            if sort not in SORTS:
                raise ValueError(f"routing.sort must be one of: {', '.join(SORTS)}")
            prefs.sort = sort
        price = routing.get("maxPriceUsd")
        if price is not None:
            if not _number(price) or price <= 0:
                raise ValueError("routing.maxPriceUsd must be a number > 0")
            prefs.max_price = float(price)
        _parse_regions(prefs, routing.get("regions"), routing.get("residency"), regions)
    if consent is not None:
        if not isinstance(consent, dict) or set(consent) != {"consentGiven"} or \
                not isinstance(consent["consentGiven"], bool):
            raise ValueError("consent must be {\"consentGiven\": true or false}")
        prefs.consent = consent["consentGiven"]
    return prefs


def _parse_regions(prefs: Preferences, allowed: Any, residency: Any, known: frozenset[str]) -> None:
    """routing.regions and routing.residency into the allowed provider regions (both given: those in both)."""
    if allowed is not None:
        if not isinstance(allowed, list) or not allowed or len(allowed) > MAX_SELECTORS:
            raise ValueError(f"routing.regions must be a list of 1..{MAX_SELECTORS} region names")
        for index, region in enumerate(allowed):
            if not isinstance(region, str) or region not in known:
                shown = ", ".join(sorted(known)) or "none: no provider lists regions"
                raise ValueError(f"routing.regions[{index}]: no provider serves from {_shown(region)} (known: {shown})")
        prefs.regions = tuple(dict.fromkeys(allowed))
    if residency is not None:
        if not isinstance(residency, str) or residency not in RESIDENCIES:
            raise ValueError(f"routing.residency must be one of: {', '.join(RESIDENCIES)}")
        prefs.residency = residency
        inside = tuple(r for r in (prefs.regions if prefs.regions is not None else sorted(known))
                       if r.startswith(RESIDENCIES[residency]))
        if prefs.regions is not None and not inside:
            raise ValueError(f"routing.regions has no region inside routing.residency {residency!r}")
        prefs.regions = inside


def in_residency(region: str | None, residency: str) -> bool:
    return region is not None and region.startswith(RESIDENCIES[residency])


def check_metadata(value: Any) -> None:
    """ValueError naming the problem when `metadata` is not an object of at most 10 short strings."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise ValueError("metadata must be an object of strings")
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata has {len(value)} keys, over {MAX_METADATA_KEYS}")
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            raise ValueError(f"metadata keys must be 1..{MAX_METADATA_KEY_CHARS} characters")
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE_CHARS:
            raise ValueError(f"metadata.{_shown(key)} must be a string of at most {MAX_METADATA_VALUE_CHARS} "
                             "characters")


def _shown(key: Any) -> str:
    text = str(key)[:32]
    return "".join(c if c.isalnum() or c in "_-" else "?" for c in text) or "?"
