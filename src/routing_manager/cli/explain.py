"""`routing-manager explain`: dry-run the routing decision for a submitted event."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from routing_manager import cli
from routing_manager.cli import (
    EndpointOpt,
    ProfileOpt,
    RegionOpt,
    StackOpt,
    _aws_errors,
    _explain_engine,
    _printable,
    _provider_table,
    app,
    bad_usage,
    fail,
    out,
)


def _given_state(path: Path) -> Any:
    """`provider status --json` output (JSON Lines, or one JSON array) as the availability it describes."""
    import time

    from routing_core.availability import Availability, items_from_status

    try:
        text = path.read_text()
        lines = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
        now = time.time()
        return Availability(items_from_status(lines, now), now=now)
    except OSError as exc:
        raise fail(f"--state {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise fail(f"--state {path}: not `provider status --json` output: {exc}") from None


def live_state_line(decision: Mapping[str, Any]) -> str | None:
    """How old the provider state behind a decision was, when it was not fresh: `live state: stale
    (age 12.3 s)` or `live state: unread`. None for a fresh one, or a decision that does not say."""
    state = decision.get("liveState")
    if state in (None, "fresh"):
        return None
    age = decision.get("liveStateAgeSec")
    return f"live state: {_printable(state)}" + (f" (age {age:g} s)" if isinstance(age, int | float) else "")


@app.command()
def explain(
    event_file: Annotated[Path, typer.Argument(help="A submitted event: PutEvents entries, envelope or bare detail.",
                                               metavar="EVENT_FILE")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as one JSON line per event.")] = False,
    live: Annotated[bool, typer.Option("--live", help="Decide with the deployed stack's provider state "
                                                      "(--stack).")] = False,
    state: Annotated[Path | None, typer.Option(help="Decide with this provider state: `provider status --json` "
                                                    "output.", metavar="FILE")] = None,
    credit_balance: Annotated[float | None, typer.Option(help="Decide with this credit balance (the user's item in "
                                                              "the Credits table).", metavar="N")] = None,
    table_version: Annotated[int | None, typer.Option(help="Decide with this routing table version published on the "
                                                           "stack (0: the bundled table). --live without it: the "
                                                           "version the stack would use for each job, canary "
                                                           "included.", min=0, metavar="N")] = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Dry-run the routing decision for a submitted event, as the deployed function decides.

    Without --live or --state every provider counts as available. A half-open breaker is shown as
    taking the job as its probe (nothing is claimed)."""
    from routing_manager.events import EventFileError, read_events

    if live and state is not None:
        raise bad_usage("--live and --state together: choose one")
    try:
        events = read_events(event_file)
        engine = _explain_engine(region)
    except (EventFileError, ValueError) as exc:
        raise fail(str(exc)) from None
    availability = _given_state(state) if state is not None else None
    pointer: Any = None
    engines: dict[int, Any] = {0: engine}
    ddb: Any = None
    table_name = ""
    if live or table_version:
        from routing_core import rollout

        with _aws_errors():
            table_name = _provider_table(stack, profile, region, endpoint_url)
            ddb = cli._aws_client("dynamodb", profile, region, endpoint_url)
            if live:
                from routing_core.availability import Availability

                from routing_manager import providers

                items = providers.read_items(ddb, table_name)
                availability = Availability(items, charge_budget=providers.budget_peek(ddb, table_name))
                pointer = rollout.Pointer(items.get(rollout.POINTER_SK))
    for event in events:
        version = table_version
        if version is None:
            job_id = event.detail.get("jobId") if isinstance(event.detail, dict) else None
            version = pointer.version_for(job_id)[0] if pointer is not None and isinstance(job_id, str) else 0
        if version not in engines:
            engines[version] = _published_engine(ddb, table_name, version, region)
        decision = engines[version].decide(event.detail, credit_balance, availability)
        decision["tableVersion"] = version
        del decision["submittedDetail"]  # the job itself, prompt included: what the record keeps, not a decision
        if as_json:
            out.print(json.dumps(decision), markup=False, highlight=False)
            continue
        _print_decision(event.origin, decision)


def _published_engine(ddb: Any, table_name: str, version: int, router_region: str | None) -> Any:
    """The engine of a version published on the stack, with the queue URLs `explain` uses for the bundled one."""
    from routing_core import rollout

    with _aws_errors():
        try:
            table = rollout.read_version(ddb, table_name, version)
        except LookupError as exc:
            raise fail(f"{exc} (see: routing-manager table versions)") from None
    return cli.explain_engine_of(table, router_region)


def _print_decision(origin: str, decision: Mapping[str, Any]) -> None:
    title = f"{origin}: [bold]{decision['outcome']}[/bold]"
    table = Table(title=title, show_header=True, title_justify="left")
    table.add_column("field")
    table.add_column("value")
    for key in ("provider", "model", "queue", "queueUrl", "quoteUsd", "priority", "reason", "rule", "tableVersion"):
        table.add_row(key, "-" if decision[key] is None else str(decision[key]))
    out.print(table)
    stale = live_state_line(decision)
    if stale is not None:
        out.print(stale, markup=False, highlight=False)
    steps = Table(show_header=True, title="why", title_justify="left")
    steps.add_column("rule")
    steps.add_column("matched")
    steps.add_column("because")
    for step in decision["explanation"]:
        steps.add_row(str(step["rule"]), "yes" if step["matched"] else "no", _printable(step["why"]))
        if "filters" in step:
            bucket = f"split bucket {step['bucket']} of 100; " if step.get("bucket") is not None else ""
            steps.add_row("", "", f"  {bucket}filters: {' > '.join(step['filters'])}")
        for candidate in step.get("candidates", []):
            dropped = f"dropped by {candidate['droppedBy']}: " if candidate.get("droppedBy") else ""
            why = _printable(candidate["skipped"] or "chosen")
            steps.add_row("", "", f"  {candidate['provider']}/{_printable(candidate['model'])} "
                                  f"${candidate['quoteUsd']:g}: {dropped}{why}")
    out.print(steps)
