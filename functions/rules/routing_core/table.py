"""The routing table schema (pydantic) and its validation with errors that name the entry.

Imported by the rules Lambda only when the table on disk differs from its lock
(see loading.py): pydantic's import alone costs more than the cold-start budget.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class Route(_Strict):
    provider: str
    model: str | None = Field(None, min_length=1, description="defaults to the provider's defaultModel")


class Rule(_Strict):
    name: str = Field(pattern=_NAME)
    description: str = ""
    when: When
    route: Route


class Limits(_Strict):
    maxLengthSec: float | None = Field(None, ge=reasons.MIN_LENGTH_SEC)
    resolutions: list[str] | None = Field(None, min_length=1)
    audio: bool = Field(True, description="whether the provider can produce audio")


class Provider(_Strict):
    queue: str = Field(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="SQS queue name, as recorded and emitted")
    queueUrlEnv: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="environment variable holding the queue URL")
    defaultModel: str = Field(min_length=1)
    enabled: bool = True
    limits: Limits = Limits()


class RoutingTable(_Strict):
    version: Literal[1]
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
            if rule.route.provider not in self.providers:
                known = ", ".join(sorted(self.providers))
                raise ValueError(f"{where}: route.provider {rule.route.provider!r} is not a provider (known: {known})")
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
