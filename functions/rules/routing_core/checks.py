"""The compiled checks of the routing table: a rule's `when` and a provider's `limits`, each a closure over its
figures that answers None (satisfied) or why not. Compiled once per table; a decision only calls them.
Split out of engine.py; plain Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from routing_core.decision import Job, echo

Check = Callable[[Job], "str | None"]  # None when satisfied, else why not


def _length_check(lo: float | None, hi: float | None) -> Check:
    def check(job: Job) -> str | None:
        if job.length is None:
            return "lengthSec not given"
        if lo is not None and job.length < lo:
            return f"lengthSec {job.length:g} < {lo:g}"
        if hi is not None and job.length > hi:
            return f"lengthSec {job.length:g} > {hi:g}"
        return None

    return check


def _in_check(attr: str, label: str, allowed: list[str]) -> Check:
    allowed_set = frozenset(allowed)
    shown = "/".join(allowed)

    def check(job: Job) -> str | None:
        value = getattr(job, attr)
        if value is None:
            return f"{label} not given"
        return None if value in allowed_set else f"{label} {echo(value)} not in {shown}"

    return check


def _audio_check(wanted: bool) -> Check:
    def check(job: Job) -> str | None:
        have = bool(job.audio)
        return None if have == wanted else f"feature.audio is {str(have).lower()}"

    return check


def _credits_check(minimum: float) -> Check:
    def check(job: Job) -> str | None:
        if job.credits is None:
            return "credit balance unknown"
        return None if job.credits >= minimum else f"credit balance {job.credits:g} < {minimum:g}"

    return check


def _metadata_check(wanted: Mapping[str, str]) -> Check:
    pairs = tuple(wanted.items())

    def check(job: Job) -> str | None:
        for key, value in pairs:
            have = job.metadata.get(key)
            if have != value:
                return f"metadata.{echo(key)} is {echo(have) if have is not None else 'not given'}, not {echo(value)}"
        return None

    return check


def compile_when(when: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    length = when.get("lengthSec")
    if length:
        checks.append(_length_check(length.get("min"), length.get("max")))
    if when.get("resolution"):
        checks.append(_in_check("resolution", "resolution", when["resolution"]))
    if when.get("tier"):
        checks.append(_in_check("tier", "tier", when["tier"]))
    if when.get("audio") is not None:
        checks.append(_audio_check(when["audio"]))
    if when.get("minCredits") is not None:
        checks.append(_credits_check(when["minCredits"]))
    if when.get("metadata"):
        checks.append(_metadata_check(when["metadata"]))
    return checks


def limit_checks(limits: Mapping[str, Any]) -> list[Check]:
    """A provider's limits guard the auto rules: a rule never sends a job it cannot take."""
    checks: list[Check] = []
    if limits.get("maxLengthSec") is not None:
        checks.append(_length_check(None, limits["maxLengthSec"]))
    if limits.get("resolutions"):
        checks.append(_in_check("resolution", "resolution", limits["resolutions"]))
    if limits.get("audio") is False:
        checks.append(_audio_check(False))
    return checks


def first_failure(checks: list[Check], job: Job) -> str | None:
    for check in checks:
        why = check(job)
        if why is not None:
            return why
    return None
