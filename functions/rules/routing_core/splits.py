"""Weighted splits of a rule's traffic (`split`): the job's stable bucket of 100, and the chain of candidates
the bucket picks. Split out of engine.py; plain Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any


def split_bucket(job_id: str) -> int:
    """The job's bucket of 100 for a weighted split: a stable hash, so a replay or duplicate goes the same way."""
    return int.from_bytes(hashlib.sha256(b"split\x00" + job_id.encode()).digest()[:8], "big") % 100


Split = tuple[list[tuple[str, str, int]], list[float]]  # entries, and the bucket bound below which each is chosen


def chain(routes: list[Mapping[str, Any]], table: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(route["provider"], route.get("model") or table["providers"][route["provider"]]["defaultModel"])
            for route in routes]


def compile_split(entries: list[Mapping[str, Any]] | None, table: Mapping[str, Any]) -> Split | None:
    if not entries:
        return None
    routes = chain(entries, table)
    weights = [entry["weight"] for entry in entries]
    total, bounds, running = sum(weights), [], 0
    for weight in weights:
        running += weight
        bounds.append(running * 100 / total)
    return [(p, m, w) for (p, m), w in zip(routes, weights, strict=True)], bounds


def split_chain(split: Split, bucket: int) -> list[tuple[str, str]]:
    """The entry the bucket falls in, then the others by weight (ties in the table's order)."""
    entries, bounds = split
    chosen = next(index for index, bound in enumerate(bounds) if bucket < bound)
    rest = sorted((entry for index, entry in enumerate(entries) if index != chosen), key=lambda e: -e[2])
    return [(entries[chosen][0], entries[chosen][1])] + [(p, m) for p, m, _ in rest]
