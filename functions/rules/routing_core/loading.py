"""Load the routing table at cold start without paying for pydantic when it is not needed.

`routing_table.lock.json` holds the table as pydantic normalised it and the SHA-256 of
the source it came from. When the source on disk still has that digest the lock is
used as is; otherwise (edited table, overridden path, no lock) the source is validated
with pydantic here, at cold start, and a bad table fails the init with a clear error.
`routing-manager table lock` rewrites the lock; a test fails when it is stale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

DEFAULT_TABLE = Path(__file__).resolve().parent.parent / "routing_table.json"


def lock_path(source: Path) -> Path:
    return source.with_name(source.stem + ".lock.json")


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def load_table(path: Path = DEFAULT_TABLE) -> dict[str, Any]:
    raw = path.read_bytes()
    try:
        lock = json.loads(lock_path(path).read_bytes())
        if lock.get("sha256") == digest(raw):
            table: dict[str, Any] = lock["table"]
            return table
    except (FileNotFoundError, ValueError, AttributeError):
        pass  # no usable lock: fall through to full validation
    from routing_core.table import validate_table

    return validate_table(raw, source=str(path))


def write_lock(path: Path = DEFAULT_TABLE) -> Path:
    """Validate the table and write its lock; raises RoutingTableError for a bad table."""
    from routing_core.table import validate_table

    raw = path.read_bytes()
    table = validate_table(raw, source=str(path))
    target = lock_path(path)
    target.write_text(json.dumps({"sha256": digest(raw), "table": table}, indent=2, sort_keys=True) + "\n")
    return target


def lock_is_current(path: Path = DEFAULT_TABLE) -> bool:
    try:
        lock = json.loads(lock_path(path).read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    return bool(lock.get("sha256") == digest(path.read_bytes()))
