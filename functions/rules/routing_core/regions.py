"""Providers in several regions (issue 26): which of a provider's regions takes a job, failing over along them.

A provider's `regions` (routing table) each have their own queue, in the router's region; availability (kill
switch, breaker, saturation) is kept per provider region too (`provider@region` scopes, availability.py). The
job may allow only some regions (`routing.regions`, `routing.residency`: preferences.py). Plain Python: the
rules Lambda imports it at cold start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routing_core.availability import Availability
from routing_core.preferences import Preferences


def place(name: str, provider: Mapping[str, Any], model: str, job_id: str, availability: Availability | None,
          prefs: Preferences | None) -> tuple[str | None, str | None, str | None, str | None]:
    """Where the candidate may take the job: (the filter that drops it or None, a note, why it is dropped, the
    provider region). A provider with regions fails over along them, lowest failoverOrder first, skipping those
    the job does not allow and those out now; its provider-wide state (kill switch, breaker) holds in all."""
    wanted = prefs.regions if prefs is not None else None
    regions = [entry[0] for entry in provider["regions"] if wanted is None or entry[0] in wanted]
    if not regions:
        if wanted is not None:
            allowed = ", ".join(wanted) or "none"
            serves = ", ".join(entry[0] for entry in provider["regions"])
            return "regions", None, (f"serves from {serves}, none of which the job allows ({allowed})" if serves else
                                     f"lists no regions, and the job allows only {allowed}"), None
        if availability is None:
            return None, None, None, None
        ok, note = availability.check(name, model, job_id)
        return (None, note, None, None) if ok else ("availability", None, note, None)
    if availability is None:
        return None, None, None, regions[0]
    ok, everywhere = availability.check(name, model, job_id)  # its state in every region: not a region's failure
    if not ok:
        return "availability", None, everywhere, None
    out: list[str] = []
    for region in regions:
        ok, note = availability.check(name, model, job_id, region)
        if ok:
            failed_over = f"in {region}; failed over from {'; '.join(out)}" if out else None
            return None, "; ".join(filter(None, (failed_over, everywhere, note))) or None, None, region
        out.append(f"{region} {note}")
    return "region", None, "every region it may take the job in is out: " + "; ".join(out), None
