"""`routing-manager publish`: validate jobs and publish them as video.job.submitted events."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from routing_manager import cli
from routing_manager.cli import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EndpointOpt,
    ProfileOpt,
    RegionOpt,
    _printable,
    app,
    err,
    out,
)


class _Unreachable:
    """Stands in for a client that could not be made (no region, no credentials): every call fails
    the same way, so publish still validates and reports each job."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def put_events(self, **_: Any) -> Any:
        raise self.error


@app.command(epilog="Exit codes: 0 all sent; 1 a job could not be sent (AWS unreachable, throttled for good); "
                    "2 a job or file was invalid (the valid ones are still sent).")
def publish(
    paths: Annotated[list[str], typer.Argument(help="Event files, folders, or - for stdin.", metavar="PATH...")],
    event_bus: Annotated[str | None, typer.Option(help="Event bus (default: the account's default bus).")] = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON result per job per line.")] = False,
    batch: Annotated[bool, typer.Option("--batch", help="Pack the jobs into video.job.batch.submitted events "
                                                        "(100 jobs and 256 KiB at most each).")] = False,
) -> None:
    """Validate jobs against the contract and publish them as video.job.submitted events.

    A file (or stdin) holds a job, a JSON list of jobs, or JSON Lines (one job per line); UTF-8, BOM or not.

    A job is a bare detail, an EventBridge envelope or a PutEvents entry.

    Each job is reported sent, invalid or not sent, then a summary line. A batch event given as it is
    ({batchId, jobs}) is sent whole, or refused in one line when over 100 jobs or 256 KiB.
    """
    from botocore.exceptions import BotoCoreError
    from rich.progress import Progress

    from routing_manager.events import EventFileError, expand_paths, parse_events, read_events, skipped_in
    from routing_manager.publish import (
        is_batch_event,
        publish_batch_events,
        publish_batches,
        publish_jobs,
        validation_error,
    )

    events, bad_files = [], 0
    for raw in paths:
        try:
            if raw == "-":
                events.extend(parse_events(sys.stdin.read(), "<stdin>"))
                continue
            for skipped, why in skipped_in(Path(raw)) if Path(raw).is_dir() else []:
                err.print(f"skipped {_printable(skipped)}: {why}", markup=False, highlight=False)
            for path in expand_paths([Path(raw)]):
                try:
                    events.extend(read_events(path))
                except EventFileError as exc:  # one bad file does not stop the others
                    bad_files += 1
                    err.print(f"error: {_printable(exc)}", markup=False, highlight=False)
        except EventFileError as exc:
            bad_files += 1
            err.print(f"error: {_printable(exc)}", markup=False, highlight=False)
    try:
        client: Any = cli._aws_client("events", profile, region, endpoint_url)
    except BotoCoreError as exc:
        client = _Unreachable(exc)
    given_batches = [e for e in events if is_batch_event(e.detail_type, e.detail)]
    events = [e for e in events if not is_batch_event(e.detail_type, e.detail)]
    details = [e.detail for e in events]
    valid = sum(1 for d in details if validation_error(d) is None)
    # A bar only in a terminal: elsewhere rich cannot draw it, and a transient one left an empty line.
    with Progress(console=err, transient=True, disable=valid < 20 or not err.is_terminal) as progress:
        task = progress.add_task("publishing", total=valid)
        send = publish_batches if batch else publish_jobs
        results = publish_batch_events([e.detail for e in given_batches], client, event_bus=event_bus,
                                       origins=[e.origin for e in given_batches]) if given_batches else []
        results += send(details, client, event_bus=event_bus, origins=[e.origin for e in events],
                        on_progress=lambda n: progress.advance(task, n))
    for r in results:
        in_batch = f" batchId={_printable(r.batchId)}" if r.batchId is not None else ""
        if as_json:
            out.print(json.dumps({"origin": r.origin, "jobId": r.jobId, "outcome": r.outcome, "eventId": r.eventId,
                                  "error": r.error, **({"batchId": r.batchId} if r.batchId is not None else {})}),
                      markup=False, highlight=False)
        elif r.ok:
            job = f" jobId={_printable(r.jobId)}" if r.jobId is not None else ""
            out.print(f"sent {_printable(r.origin)}{job}{in_batch} eventId={r.eventId}", markup=False,
                      highlight=False)
        else:
            job = f" jobId={_printable(r.jobId)}" if r.jobId is not None else in_batch
            err.print(f"error: {_printable(r.origin)}{job}: {_printable(r.error)}", markup=False, highlight=False)
    invalid = sum(1 for r in results if r.outcome == "invalid")
    unsent = sum(1 for r in results if r.outcome == "not_sent")
    files = f", {bad_files} file{'s' * (bad_files != 1)} unreadable" if bad_files else ""
    err.print(f"{sum(r.ok for r in results)} sent, {invalid} invalid, {unsent} not sent{files}", highlight=False)
    if unsent:
        raise typer.Exit(EXIT_FAILED)
    if invalid or bad_files:
        raise typer.Exit(EXIT_BAD_INPUT)
