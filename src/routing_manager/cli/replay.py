"""`routing-manager replay`: list failed jobs and stale claims; with --yes, re-submit them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
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
    _duration,
    _printable,
    _stack_name,
    app,
    bad_usage,
    err,
    fail,
    out,
)

EXPRESS_LIMIT = timedelta(minutes=5)


def _since(text: str) -> datetime:
    """--since: a duration back from now (2h) or an ISO 8601 time (UTC unless it says)."""
    try:
        return datetime.now(UTC) - _duration(text)
    except typer.BadParameter:
        pass
    from routing_manager.replay import utc_time

    parsed = utc_time(text)
    if parsed is None:
        raise typer.BadParameter(f"{text!r}: give an ISO 8601 time or a duration such as 2h")
    return parsed


@app.command(epilog="Exit codes: 0 listed or replayed; 1 AWS unreachable or refused; 2 bad options.")
def replay(
    stack: StackOpt = None,
    job_id: Annotated[list[str] | None, typer.Option("--job-id", metavar="ID",
                                                     help="Only these jobs (repeatable).")] = None,
    since: Annotated[datetime | None, typer.Option(parser=_since, metavar="TIME",
                                                   help="Only failures since: ISO time or a duration (2h).")] = None,
    reason: Annotated[str | None, typer.Option(help="Only reasons starting with this (queue_error).")] = None,
    stale_after: Annotated[str, typer.Option(help="A claim older than this is stale; at least 5m, the EXPRESS "
                                                  "limit, unless --force.")] = "15m",
    force: Annotated[bool, typer.Option("--force", help="Allow --stale-after under 5m (it may release a claim "
                                                         "a running execution still holds).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Replay them. Without it: list only (dry run).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job per line.")] = False,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """List failed jobs and stale claims; with --yes, re-submit them (never enqueued twice)."""
    from routing_manager import replay as replaying

    try:
        stale = _duration(stale_after)
    except typer.BadParameter as exc:
        raise bad_usage(exc.message, "--stale-after") from None
    if stale < EXPRESS_LIMIT and not force:
        raise fail(f"--stale-after {stale_after} is under the 5-minute EXPRESS limit: a running execution may still "
                   "hold such a claim (add --force to release it anyway)")
    with _aws_errors():
        outputs = cli.stack_outputs(_stack_name(stack, endpoint_url), profile, region, endpoint_url)
        ddb, sqs, events = (cli._aws_client(s, profile, region, endpoint_url) for s in ("dynamodb", "sqs", "events"))
        table = outputs["JobsTableName"]
        found: list[Any] = []
        try:
            found = replaying.find(ddb, sqs, table, outputs.get("RoutingFailureQueueUrl"),
                                   outputs.get("SubmittedEventsDLQUrl"), stale)
            done = replaying.replay(replaying.select(found, job_id, since, reason), ddb, sqs, events, table,
                                    outputs.get("EventBusName"), yes)
        finally:
            replaying.release(sqs, found)
    if not done:
        err.print("nothing to replay", highlight=False)
        return
    if as_json:
        for c in done:
            out.print(json.dumps({"jobId": c.jobId, "source": c.source, "reason": c.reason,
                                  "since": c.since.isoformat() if c.since else None, "outcome": c.outcome,
                                  "action": c.action}),
                      markup=False, highlight=False)
    else:
        table_view = Table(title="replay" if yes else "replay (dry run)", title_justify="left")
        for column in ("jobId", "source", "reason", "since", "action"):
            table_view.add_column(column, overflow="fold")
        for c in done:
            table_view.add_row(_printable(c.jobId), c.source, _printable(c.reason),
                               c.since.isoformat() if c.since else "-", _printable(c.action))
        out.print(table_view)
    actionable = sum(1 for c in done if c.actionable)
    if not yes and actionable:
        err.print(f"{actionable} job{'s' * (actionable != 1)} to replay: run again with --yes", highlight=False)
