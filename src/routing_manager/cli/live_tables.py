"""`routing-manager table publish|versions|status|shadow|canary|promote|rollback|diff`: routing tables that
change live on a deployed stack (routing_core.rollout, docs/ROUTING_TABLES.md). Every change is audited and
announced as `routing.table.changed`."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from routing_manager import cli
from routing_manager.cli import (
    EXIT_FAILED,
    EndpointOpt,
    ProfileOpt,
    RegionOpt,
    StackOpt,
    _aws_errors,
    _printable,
    _stack_name,
    _stack_output,
    fail,
    out,
    table_app,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line for lists).")]
VersionArg = Annotated[int, typer.Argument(help="A published version (table versions lists them).", min=1,
                                           metavar="N")]


@dataclass
class _Stack:
    name: str
    control_table: str
    bus: str
    ddb: Any
    events: Any
    sts: Any

    def caller(self) -> str:
        from routing_manager.providers import caller

        return caller(self.sts)


def _stack(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None) -> _Stack:
    name = _stack_name(stack, endpoint_url)
    outputs = cli.stack_outputs(name, profile, region, endpoint_url)
    ddb, events, sts = (cli._aws_client(s, profile, region, endpoint_url) for s in ("dynamodb", "events", "sts"))
    return _Stack(name, _stack_output(outputs, "ProviderStateTableName", name), outputs.get("EventBusName", "default"),
                  ddb, events, sts)


def _announce(target: _Stack, detail: dict[str, Any]) -> None:
    from routing_core import control, rollout
    from routing_core.contract import ROUTER_SOURCE

    try:
        control.record(target.ddb, target.events, target.control_table, target.bus, ROUTER_SOURCE, detail,
                       rollout.CHANGED_DETAIL_TYPE)
    except RuntimeError as exc:  # written, but not announced: PutEvents refused the entry
        raise fail(str(exc), EXIT_FAILED) from None


def _published(target: _Stack, version: int) -> None:
    from routing_core import rollout

    if version > rollout.latest_version(target.ddb, target.control_table):
        raise fail(f"version {version} is not published on stack {target.name} (see: routing-manager table versions)")


def _change(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None, as_json: bool,
            make: Callable[[_Stack, Any], dict[str, Any]]) -> None:
    """Read the pointer, make one conditional change to it, audit and announce it, print the new status."""
    from routing_core import rollout

    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        try:
            detail = make(target, rollout.read_pointer(target.ddb, target.control_table))
        except rollout.Conflict as exc:
            raise fail(f"{exc}: nothing changed (run the command again)", EXIT_FAILED) from None
        _announce(target, detail)
        status = rollout.read_pointer(target.ddb, target.control_table).status()
    if as_json:
        out.print(json.dumps({"change": detail, "status": _status_json(status)}), markup=False, highlight=False)
    else:
        out.print(_printable(_change_line(detail)), markup=False, highlight=False)


def _change_line(detail: dict[str, Any]) -> str:
    percent = f" at {detail['percent']:g} %" if detail.get("percent") is not None else ""
    reason = f": {detail['reason']}" if detail.get("reason") else ""
    return f"routing table version {detail['version']}: {detail['mode']}{percent} (by {detail['by']}){reason}"


def _status_json(status: dict[str, Any]) -> dict[str, Any]:
    return {key: status[key] for key in ("active", "shadow", "canary", "since")}


@table_app.command("publish")
def table_publish(
    path: Annotated[Path, typer.Argument(help="A routing table JSON file.", metavar="FILE")],
    note: Annotated[str | None, typer.Option(help="Why this version: kept with it.")] = None,
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Validate a table and store it as the next version (it decides nothing until shadow, canary or promote)."""
    from routing_core import rollout
    from routing_core.table import RoutingTableError

    from routing_manager.cli.table import validated

    try:
        table = validated(path)
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror} (give a routing table JSON file)") from None
    except RoutingTableError as exc:
        raise fail("; ".join(line.strip() for line in str(exc).splitlines()).replace(":;", ":")) from None
    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        try:
            entry = rollout.publish(target.ddb, target.control_table, table, target.caller(), note)
        except rollout.Conflict as exc:
            raise fail(f"{exc}: nothing written (publish again to get the next number)", EXIT_FAILED) from None
        _announce(target, rollout.changed(entry["version"], "published", entry["by"], note))
    if as_json:
        out.print(json.dumps(entry), markup=False, highlight=False)
    else:
        out.print(f"published routing table version {entry['version']} (sha256 {entry['sha256'][:12]})")


@table_app.command("versions")
def table_versions(
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """The published versions, oldest first (version 0, the bundled table, is not listed)."""
    from routing_core import rollout

    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        found = rollout.versions(target.ddb, target.control_table)
    if as_json:
        for entry in found:
            out.print(json.dumps(entry), markup=False, highlight=False)
        return
    listing = Table(title=f"routing table versions on {target.name}", title_justify="left")
    for column in ("version", "sha256", "by", "at", "note"):
        listing.add_column(column)
    for entry in found:
        listing.add_row(str(entry["version"]), entry["sha256"][:12], _printable(entry["by"]), entry["at"],
                        _printable(entry["note"] or ""))
    out.print(listing)


@table_app.command("status")
def table_status(
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Which versions decide now: the active one, any shadow or canary, and since when."""
    from routing_core import rollout

    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        status = rollout.read_pointer(target.ddb, target.control_table).status()
    if as_json:
        out.print(json.dumps(_status_json(status)), markup=False, highlight=False)
        return
    canary = status["canary"]
    out.print(f"active: version {status['active']}" + (" (the bundled table)" if status["active"] == 0 else ""))
    out.print(f"shadow: {'version ' + str(status['shadow']) if status['shadow'] is not None else 'none'}")
    out.print("canary: " + (f"version {canary['version']} for {canary['percent']:g} % of jobs"
                            + (f", rolled back on {', '.join(status['rollbackOn'])}" if status["rollbackOn"] else "")
                            if canary else "none"))
    out.print(f"since: {status['since'] or '-'}")


@table_app.command("shadow")
def table_shadow(
    version: VersionArg, as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Decide every job with the active version and, without effect, with version N too (see: table diff N)."""
    from routing_core import rollout

    def make(target: _Stack, pointer: Any) -> dict[str, Any]:
        _published(target, version)
        rollout.change_pointer(target.ddb, target.control_table, pointer, {"shadow": version})
        return rollout.changed(version, "shadow", target.caller())

    _change(stack, profile, region, endpoint_url, as_json, make)


@table_app.command("canary")
def table_canary(
    version: VersionArg,
    percent: Annotated[float, typer.Option(help="The share of jobs (sticky by jobId) version N decides.", min=0.01,
                                           max=100)],
    rollback_on: Annotated[list[str] | None, typer.Option(
        "--rollback-on", help="An alarm of this stack (<stack>-...): in ALARM, it ends the canary. Repeatable.",
        metavar="ALARM_NAME")] = None,
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Let version N decide P % of jobs, the same jobs on every replay."""
    from routing_core import rollout

    alarms = rollback_on or []

    def make(target: _Stack, pointer: Any) -> dict[str, Any]:
        _published(target, version)
        foreign = [name for name in alarms if not name.startswith(f"{target.name}-")]
        if foreign:
            raise fail(f"--rollback-on {foreign[0]}: not an alarm of stack {target.name} (its alarms are named "
                       f"{target.name}-...; only those reach the rollback function)")
        rollout.change_pointer(target.ddb, target.control_table, pointer,
                               {"canary": version, "canaryPercent": percent, "rollbackOn": json.dumps(alarms)})
        return rollout.changed(version, "canary", target.caller(), percent=percent)

    _change(stack, profile, region, endpoint_url, as_json, make)


@table_app.command("promote")
def table_promote(
    version: VersionArg, as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Make version N active for every job (ending any shadow and canary)."""
    from routing_core import rollout

    def make(target: _Stack, pointer: Any) -> dict[str, Any]:
        _published(target, version)
        rollout.change_pointer(target.ddb, target.control_table, pointer,
                               {"active": version, "previous": pointer.active},
                               remove=("shadow", "canary", "canaryPercent", "rollbackOn"))
        return rollout.changed(version, "promoted", target.caller(), percent=100)

    _change(stack, profile, region, endpoint_url, as_json, make)


@table_app.command("rollback")
def table_rollback(
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """End any shadow and canary, and make active again the version before the last promote (0 if none)."""
    from routing_core import rollout

    def make(target: _Stack, pointer: Any) -> dict[str, Any]:
        rollout.change_pointer(target.ddb, target.control_table, pointer, {"active": pointer.previous},
                               remove=("shadow", "canary", "canaryPercent", "rollbackOn"))
        return rollout.changed(pointer.previous, "rolled_back", target.caller(),
                               reason=f"from version {pointer.active}")

    _change(stack, profile, region, endpoint_url, as_json, make)


@table_app.command("diff")
def table_diff(
    version: VersionArg, as_json: JsonOpt = False,
    samples: Annotated[int, typer.Option(help="Sample jobIds per row.", min=0, max=20)] = 3,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """The jobs version N's shadow decided differently, by (active -> shadow) route (kept 7 days)."""
    from routing_core import rollout

    rows: dict[tuple[str, str], list[str]] = defaultdict(list)
    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        request: dict[str, Any] = {"TableName": target.control_table, "KeyConditionExpression": "pk = :pk",
                                   "ExpressionAttributeValues": {":pk": {"S": f"{rollout.SHADOW_PK_PREFIX}{version}"}}}
        while True:
            page = target.ddb.query(**request)
            for item in page.get("Items", []):
                rows[(item["from"]["S"], item["to"]["S"])].append(item["sk"]["S"])
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    ordered = sorted(rows.items(), key=lambda row: (-len(row[1]), row[0]))
    if as_json:
        for (before, after), jobs in ordered:
            out.print(json.dumps({"from": before, "to": after, "count": len(jobs), "sampleJobIds": jobs[:samples]}),
                      markup=False, highlight=False)
        return
    if not ordered:
        out.print(f"no disagreement recorded for version {version} (is it the shadow? see: table status)")
        return
    listing = Table(title=f"version {version} in shadow: where it would have routed differently", title_justify="left")
    for column in ("active", "shadow", "jobs", "sample jobIds"):
        listing.add_column(column)
    for (before, after), jobs in ordered:
        listing.add_row(_printable(before), _printable(after), str(len(jobs)),
                        _printable(", ".join(jobs[:samples])))
    out.print(listing)
