"""`routing-manager table lock|validate` and `schemas`: the routing table and the contract's schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from routing_manager import project
from routing_manager.cli import (
    EXIT_FAILED,
    EndpointOpt,
    ProfileOpt,
    RegionOpt,
    StackOpt,
    _aws_errors,
    app,
    bad_usage,
    fail,
    out,
    table_app,
)


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


@table_app.command("show")
def table_show(
    path: Annotated[Path | None, typer.Argument(help="A routing table file (default: the one the rules function "
                                                     "ships with).", metavar="FILE")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the validated table as one JSON object.")] = False,
    version: Annotated[int | None, typer.Option(help="A version published on the stack (table versions) instead of "
                                                     "a file; 0 is the bundled table.", min=0, metavar="N")] = None,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Show a routing table: each provider with its data policy, each rule with its route or weighted split."""
    from rich.table import Table
    from routing_core.loading import DEFAULT_TABLE
    from routing_core.table import RoutingTableError

    if path is not None and version is not None:
        raise bad_usage("FILE and --version together: choose one")
    source = path or DEFAULT_TABLE
    if version:
        from routing_core import rollout

        from routing_manager.cli.live_tables import _stack

        with _aws_errors():
            target = _stack(stack, profile, region, endpoint_url)
            try:
                table = rollout.read_version(target.ddb, target.control_table, version)
            except LookupError as exc:
                raise fail(f"{exc} on stack {target.name} (see: routing-manager table versions)") from None
        source = Path(f"version {version}")
    else:
        try:
            table = validated(source)
        except OSError as exc:
            raise fail(f"{source}: cannot read: {exc.strerror} (give a routing table JSON file)") from None
        except RoutingTableError as exc:
            raise fail("; ".join(line.strip() for line in str(exc).splitlines()).replace(":;", ":")) from None
    if as_json:
        out.print(json.dumps(table), markup=False, highlight=False)
        return
    providers = Table(title=f"providers ({source.name})", title_justify="left")
    for column in ("provider", "enabled", "models (USD/s by resolution)", "data policy", "daily budget"):
        providers.add_column(column)
    for name, spec in table["providers"].items():
        models = "; ".join(f"{model} " + ",".join(f"{res} {usd:g}" for res, usd in price["perSecondUsd"].items())
                           for model, price in spec["prices"].items())
        providers.add_row(name, "yes" if spec["enabled"] else "no", models, _data_policy(spec.get("dataPolicy")),
                          "-" if spec.get("dailyBudgetUsd") is None else f"${spec['dailyBudgetUsd']:g}")
    out.print(providers)
    rules = Table(title="rules, in order", title_justify="left")
    for column in ("rule", "when", "route"):
        rules.add_column(column)
    for rule in table["rules"]:
        when = ", ".join(f"{key}={json.dumps(value)}" for key, value in rule["when"].items() if value is not None)
        rules.add_row(rule["name"], when or "(any job)", _route_text(rule, table))
    out.print(rules)


def _data_policy(policy: dict[str, Any] | None) -> str:
    if not policy:
        return "unknown (treated as retaining inputs)"
    claims = [label for label, on in (("retains inputs", policy["retainsInputs"]),
                                      ("trains on inputs", policy["trainsOnInputs"])) if on]
    return (", ".join(claims) or "neither retains nor trains on inputs") + f" (source: {policy['source']})"


def _route_text(rule: dict[str, Any], table: dict[str, Any]) -> str:
    def name(entry: dict[str, Any]) -> str:
        return f"{entry['provider']}/{entry.get('model') or table['providers'][entry['provider']]['defaultModel']}"

    if rule.get("split"):
        total = sum(entry["weight"] for entry in rule["split"])
        return "split: " + " | ".join(f"{name(entry)} {entry['weight'] * 100 / total:g}%" for entry in rule["split"])
    order = " > ".join(name(entry) for entry in rule["route"])
    return f"{order} (cheapest first)" if rule.get("strategy") == "cheapest" else order
