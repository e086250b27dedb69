"""`routing-manager table lock|validate` and `schemas`: the routing table and the contract's schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from routing_manager import project
from routing_manager.cli import EXIT_FAILED, app, fail, out, table_app


def validated(path: Path) -> dict[str, Any]:
    """A routing table file as `table validate` checks it; raises RoutingTableError or OSError."""
    from routing_core.table import validate_table

    return validate_table(path.read_bytes(), source=str(path))


def routing_table_option(text: str) -> Path:
    """--routing-table FILE (local run / up): the file must exist and be a valid table, or one line, exit 2."""
    from routing_core.table import RoutingTableError

    path = Path(text)
    try:
        validated(path)
    except OSError as exc:
        raise typer.BadParameter(f"{path}: cannot read: {exc.strerror}") from None
    except RoutingTableError as exc:
        raise typer.BadParameter("; ".join(line.strip() for line in str(exc).splitlines()).replace(":;", ":")
                                 ) from None
    return path


@app.command()
def schemas(
    write: Annotated[bool, typer.Option("--write", help="Rewrite events/schemas/ from the models.")] = False,
) -> None:
    """Check (default) or write the JSON Schemas generated from the contract models."""
    from routing_core.contract import json_schemas

    stale = []
    for name, schema in json_schemas().items():
        path = project.SCHEMAS / f"{name}.schema.json"
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            out.print(f"wrote {path.relative_to(project.ROOT)}")
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(project.ROOT)))
    if stale:
        raise fail("schemas drifted from the contract models: " + ", ".join(stale) + " (run: make schemas)",
                   EXIT_FAILED)
    if not write:
        out.print("schemas match the contract models")


@table_app.command("lock")
def table_lock(
    check: Annotated[bool, typer.Option("--check", help="Only check that the lock is current.")] = False,
) -> None:
    """Validate routing_table.json with pydantic and write its lock (what the Lambda loads fast)."""
    from routing_core.loading import DEFAULT_TABLE, lock_is_current, write_lock
    from routing_core.table import RoutingTableError

    if check:
        if not lock_is_current(DEFAULT_TABLE):
            raise fail("routing_table.lock.json is stale: run `make lock`", EXIT_FAILED)
        out.print("routing table lock is current")
        return
    try:
        path = write_lock(DEFAULT_TABLE)
    except RoutingTableError as exc:
        raise fail(str(exc)) from None
    out.print(f"validated; wrote {path}")


@table_app.command("validate")
def table_validate(path: Annotated[Path, typer.Argument(help="A routing table JSON file.", metavar="FILE")]) -> None:
    """Validate a routing table file; errors name each bad entry."""
    from routing_core.table import RoutingTableError

    try:
        table = validated(path)
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror}") from None
    except RoutingTableError as exc:
        raise fail(str(exc)) from None
    out.print(f"{path}: valid ({len(table['providers'])} providers, {len(table['rules'])} rules)")
