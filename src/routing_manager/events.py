"""Reading submitted-event files in every shape users have them.

- PutEvents entries, as `aws events put-events --entries file://...` takes them:
  `[{"Source": ..., "DetailType": ..., "Detail": "<JSON text>"}]`
- an EventBridge event envelope: `{"source": ..., "detail-type": ..., "detail": {...}}`
- a bare `video.job.submitted` detail: `{"jobId": ..., ...}`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routing_core.contract import SUBMITTED_DETAIL_TYPE, SUBMITTED_SOURCE


class EventFileError(ValueError):
    """A file that cannot be read as events; the message names the file."""


@dataclass(frozen=True)
class SubmittedEvent:
    source: str
    detail_type: str
    detail: Any
    origin: str  # "file.json" or "file.json[2]"
    event_bus: str | None = None

    def entry(self, event_bus: str | None = None) -> dict[str, Any]:
        """A PutEvents entry for this event."""
        return put_events_entry(self.detail, event_bus or self.event_bus, self.source, self.detail_type)


def put_events_entry(detail: Any, event_bus: str | None = None, source: str = SUBMITTED_SOURCE,
                     detail_type: str = SUBMITTED_DETAIL_TYPE) -> dict[str, Any]:
    """The PutEvents entry of a submitted job: what publish, replay and the local stack send."""
    entry = {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail)}
    if event_bus:
        entry["EventBusName"] = event_bus
    return entry


def _from_object(obj: Any, origin: str) -> SubmittedEvent:
    if isinstance(obj, dict) and "Detail" in obj and ("DetailType" in obj or "Source" in obj):
        detail = obj["Detail"]
        if isinstance(detail, str):
            try:
                detail = json.loads(detail)
            except json.JSONDecodeError as exc:
                raise EventFileError(f"{origin}: Detail is not JSON: {exc.msg}") from None
        return SubmittedEvent(obj.get("Source", SUBMITTED_SOURCE), obj.get("DetailType", SUBMITTED_DETAIL_TYPE),
                              detail, origin, obj.get("EventBusName"))
    if isinstance(obj, dict) and "detail" in obj and ("detail-type" in obj or "source" in obj):
        return SubmittedEvent(obj.get("source", SUBMITTED_SOURCE), obj.get("detail-type", SUBMITTED_DETAIL_TYPE),
                              obj["detail"], origin)
    return SubmittedEvent(SUBMITTED_SOURCE, SUBMITTED_DETAIL_TYPE, obj, origin)


def parse_events(text: str, origin: str) -> list[SubmittedEvent]:
    """One JSON value (an event, or a list of them), or JSON Lines: one event per line."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as some editors write
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # more than one value: JSON Lines
            return _json_lines(text, origin)
        raise EventFileError(f"{origin}: not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if isinstance(data, list):
        if not data:
            raise EventFileError(f"{origin}: an empty list holds no event")
        return [_from_object(item, f"{origin}[{i}]") for i, item in enumerate(data)]
    return [_from_object(data, origin)]


def _json_lines(text: str, origin: str) -> list[SubmittedEvent]:
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(_from_object(json.loads(line), f"{origin}:{number}"))
        except json.JSONDecodeError as exc:
            raise EventFileError(f"{origin}: line {number} is not JSON: {exc.msg} (column {exc.colno})") from None
    return events


def read_events(path: Path) -> list[SubmittedEvent]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EventFileError(f"{path}: cannot read: {reason}") from None
    return parse_events(text, str(path))


def skipped_in(folder: Path) -> list[tuple[Path, str]]:
    """The *.json entries of a folder that expand_paths leaves out, and why."""
    skipped = []
    for path in sorted(folder.glob("*.json")):
        if path.is_symlink() and not path.exists():
            skipped.append((path, "a broken link"))
        elif not path.is_file():
            skipped.append((path, "not a file"))
    return skipped


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; folders as their *.json files, sorted, schemas excluded."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.json") if p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise EventFileError(f"{path}: no such file or folder")
    if not files:
        raise EventFileError("no event files found in " + ", ".join(str(p) for p in paths))
    return files
