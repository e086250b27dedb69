"""The contract's size limits (docs/EVENT_SCHEMA.md), checked the same way by the rules Lambda (the
workflow's gate) and by the pydantic contract (publishers). Plain Python: the Lambda imports it at cold start."""

from __future__ import annotations

import json
from typing import Any

from routing_core import reasons


def _depth_over(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit` (the value itself is level 1); iterative,
    so that no depth a JSON parser accepted can exhaust the stack here."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, level + 1))
    return False


def _utf8_size(text: str) -> int | None:
    """Bytes as UTF-8, or None when the text holds a lone surrogate (JSON allows it, UTF-8 cannot)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def check(detail: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """The detail as compact JSON (what the record keeps for replay), or "" and the reason it is refused."""
    job_id = detail.get("jobId")
    if isinstance(job_id, str):
        size = _utf8_size(job_id)
        if size is None:
            return "", reasons.JOB_ID_NOT_UNICODE, "jobId is not valid Unicode"
        if size > reasons.MAX_JOB_ID_BYTES:
            return "", reasons.JOB_ID_TOO_LONG, f"jobId is {size} bytes, over {reasons.MAX_JOB_ID_BYTES}"
    too_deep = "", reasons.JOB_TOO_DEEP, f"the detail nests over {reasons.MAX_DETAIL_DEPTH} levels"
    try:
        text = json.dumps(detail, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:  # nested far deeper than the limit
        return too_deep
    # Fewer brackets than the limit cannot nest deeper than it (brackets inside strings only add to the count):
    # the walk, most of the check's cost, runs only for a detail that might.
    if text.count("{") + text.count("[") > reasons.MAX_DETAIL_DEPTH and _depth_over(detail, reasons.MAX_DETAIL_DEPTH):
        return too_deep
    size = _utf8_size(text)
    if size is None:
        return "", reasons.INVALID_ENCODING, "a string in the detail is not valid Unicode"
    if size > reasons.MAX_DETAIL_BYTES:
        return "", reasons.JOB_TOO_LARGE, f"the detail is {size:,} bytes, over {reasons.MAX_DETAIL_BYTES:,}"
    return text, None, None
