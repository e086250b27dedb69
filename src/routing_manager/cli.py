"""`routing-manager`: the operator CLI (explain, local stack, publish, replay, graph, schemas)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from routing_manager import project
from routing_manager.events import EventFileError, expand_paths, read_events


# Help as click and the AWS CLI write it: a flag shows no type (typer prints <bool>), an argument its
# name and its help (typer adds <list[str]>), and the usage line NAME / [NAME]... (typer: {name}).
def _option_type(self: Any, ctx: Any) -> str | None:
    return None if self.is_flag else self.metavar or typer.core._TyperParameter.display_type_rich(self, ctx)


def _usage_name(self: Any) -> str:
    name = self.display_name_raw.upper()
    return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 and "..." not in name else "")


typer.core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]

app = typer.Typer(help="Routing Manager operator tooling.", no_args_is_help=True, add_completion=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
local_app = typer.Typer(help="The local stack: template.yaml deployed into moto, run in this process.",
                        no_args_is_help=True)
table_app = typer.Typer(help="The routing table (functions/rules/routing_table.json).", no_args_is_help=True)
provider_app = typer.Typer(help="Provider availability on a deployed stack: status, kill switch.",
                           no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(table_app, name="table")
app.add_typer(provider_app, name="provider")

# Piped output (CI logs, files) gets a wide table rather than 80 folded columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        out.print(f"routing-manager {version('routing-manager')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Routing Manager operator tooling."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code)


def needs(extra: str, *modules: str) -> None:
    """The local stack and the pictures are extras: say which to install rather than fail on an import."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"this needs the [{extra}] extra ({', '.join(missing)} not installed): "
                   f"pip install 'routing-manager[{extra}]'", EXIT_FAILED)


# --- explain ------------------------------------------------------------------------------

ProfileOpt = Annotated[str | None, typer.Option(help="AWS profile.")]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region.")]
EndpointOpt = Annotated[str | None, typer.Option(help="Endpoint URL, e.g. the local stack's.")]
StackOpt = Annotated[str | None, typer.Option(help="The deployed stack (its outputs name its tables, queues, bus). "
                                                   "Default: routing-manager, or the local stack's name with "
                                                   "--endpoint-url.")]


def _explain_engine() -> Any:
    """The engine as deployed: the locked routing table, every provider's queue configured
    (placeholder URLs) unless the current environment names real ones."""
    from routing_core.engine import Engine
    from routing_core.loading import load_table

    table_path = Path(os.environ.get("ROUTING_TABLE_PATH") or project.RULES_FUNCTION / "routing_table.json")
    table = load_table(table_path)
    urls = {spec["queueUrlEnv"]: os.environ.get(spec["queueUrlEnv"]) or f"https://sqs.local/{spec['queue']}"
            for spec in table["providers"].values()}
    return Engine(table, urls)


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
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Dry-run the routing decision for a submitted event, as the deployed function decides.

    Without --live or --state every provider counts as available. A half-open breaker is shown as
    taking the job as its probe (nothing is claimed)."""
    if live and state is not None:
        raise fail("--live and --state: choose one")
    try:
        events = read_events(event_file)
        engine = _explain_engine()
    except (EventFileError, ValueError) as exc:
        raise fail(str(exc)) from None
    availability = _given_state(state) if state is not None else None
    if live:
        from routing_core.availability import Availability

        from routing_manager import providers

        with _aws_errors():
            table_name = _provider_table(stack, profile, region, endpoint_url)
            items = providers.read_items(_aws_client("dynamodb", profile, region, endpoint_url), table_name)
        availability = Availability(items)
    for event in events:
        decision = engine.decide(event.detail, credit_balance, availability)
        del decision["submittedDetail"]  # the job itself, prompt included: what the record keeps, not a decision
        if as_json:
            out.print(json.dumps(decision), markup=False, highlight=False)
            continue
        title = f"{event.origin}: [bold]{decision['outcome']}[/bold]"
        table = Table(title=title, show_header=True, title_justify="left")
        table.add_column("field")
        table.add_column("value")
        for key in ("provider", "model", "queue", "queueUrl", "quoteUsd", "priority", "reason", "rule"):
            table.add_row(key, "-" if decision[key] is None else str(decision[key]))
        out.print(table)
        steps = Table(show_header=True, title="why", title_justify="left")
        steps.add_column("rule")
        steps.add_column("matched")
        steps.add_column("because")
        for step in decision["explanation"]:
            steps.add_row(str(step["rule"]), "yes" if step["matched"] else "no", _printable(step["why"]))
            for candidate in step.get("candidates", []):
                steps.add_row("", "", f"  {candidate['provider']}/{_printable(candidate['model'])} "
                                      f"${candidate['quoteUsd']:g}: {_printable(candidate['skipped'] or 'chosen')}")
        out.print(steps)


# --- schemas and table --------------------------------------------------------------------

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
    from routing_core.table import RoutingTableError, validate_table

    try:
        table = validate_table(path.read_bytes(), source=str(path))
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror}") from None
    except RoutingTableError as exc:
        raise fail(str(exc)) from None
    out.print(f"{path}: valid ({len(table['providers'])} providers, {len(table['rules'])} rules)")


# --- publish ------------------------------------------------------------------------------

def _aws_client(service: str, profile: str | None, region: str | None, endpoint_url: str | None) -> Any:
    import boto3

    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client(service, endpoint_url=endpoint_url)


class _Unreachable:
    """Stands in for a client that could not be made (no region, no credentials): every call fails
    the same way, so publish still validates and reports each job."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def put_events(self, **_: Any) -> Any:
        raise self.error


def _printable(text: Any) -> str:
    """Control characters from job fields shown escaped, never written raw to the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@app.command(epilog="Exit codes: 0 all sent; 1 a job could not be sent (AWS unreachable, throttled for good); "
                    "2 a job or file was invalid (the valid ones are still sent).")
def publish(
    paths: Annotated[list[str], typer.Argument(help="Event files, folders, or - for stdin.", metavar="PATH...")],
    event_bus: Annotated[str | None, typer.Option(help="Event bus (default: the account's default bus).")] = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON result per job per line.")] = False,
) -> None:
    """Validate jobs against the contract and publish them as video.job.submitted events.

    A file (or stdin) holds a job, a JSON list of jobs, or JSON Lines (one job per line); UTF-8, BOM or not.

    A job is a bare detail, an EventBridge envelope or a PutEvents entry.

    Each job is reported sent, invalid or not sent, then a summary line.
    """
    from botocore.exceptions import BotoCoreError
    from rich.progress import Progress

    from routing_manager.events import parse_events, skipped_in
    from routing_manager.publish import publish_jobs, validation_error

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
        client: Any = _aws_client("events", profile, region, endpoint_url)
    except BotoCoreError as exc:
        client = _Unreachable(exc)
    details = [e.detail for e in events]
    valid = sum(1 for d in details if validation_error(d) is None)
    with Progress(console=err, transient=True, disable=valid < 20) as progress:
        task = progress.add_task("publishing", total=valid)
        results = publish_jobs(details, client, event_bus=event_bus, origins=[e.origin for e in events],
                               on_progress=lambda n: progress.advance(task, n))
    for r in results:
        if as_json:
            out.print(json.dumps({"origin": r.origin, "jobId": r.jobId, "outcome": r.outcome, "eventId": r.eventId,
                                  "error": r.error}),
                      markup=False, highlight=False)
        elif r.ok:
            out.print(f"sent {_printable(r.origin)} jobId={_printable(r.jobId)} eventId={r.eventId}", markup=False,
                      highlight=False)
        else:
            job = f" jobId={_printable(r.jobId)}" if r.jobId is not None else ""
            err.print(f"error: {_printable(r.origin)}{job}: {_printable(r.error)}", markup=False, highlight=False)
    invalid = sum(1 for r in results if r.outcome == "invalid")
    unsent = sum(1 for r in results if r.outcome == "not_sent")
    files = f", {bad_files} file{'s' * (bad_files != 1)} unreadable" if bad_files else ""
    err.print(f"{sum(r.ok for r in results)} sent, {invalid} invalid, {unsent} not sent{files}", highlight=False)
    if unsent:
        raise typer.Exit(EXIT_FAILED)
    if invalid or bad_files:
        raise typer.Exit(EXIT_BAD_INPUT)


# --- replay -------------------------------------------------------------------------------

def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    raise typer.BadParameter(f"{text!r}: use a number and s, m, h or d (e.g. 15m)")


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.now(UTC) - _duration(text)
    except typer.BadParameter:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: an ISO 8601 time or a duration such as 2h") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def stack_outputs(stack_name: str, profile: str | None, region: str | None, endpoint_url: str | None) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        stack = _aws_client("cloudformation", profile, region, endpoint_url).describe_stacks(
            StackName=stack_name)["Stacks"][0]
    except ClientError as exc:
        raise fail(f"stack {stack_name}: {exc.response['Error']['Message']}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


EXPRESS_LIMIT = timedelta(minutes=5)


@contextlib.contextmanager
def _aws_errors() -> Iterator[None]:
    """An AWS that cannot be reached, or refuses, is one line and exit 1: never a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        raise fail("no AWS credentials: set AWS_PROFILE (or --profile) or the AWS_ACCESS_KEY_ID variables",
                   EXIT_FAILED) from None
    except NoRegionError:
        raise fail("no AWS region: pass --region or set AWS_REGION", EXIT_FAILED) from None
    except BotoCoreError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise fail(f"{error.get('Code', 'error')}: {error.get('Message', exc)}", EXIT_FAILED) from None


@app.command(epilog="Exit codes: 0 listed or replayed; 1 AWS unreachable or refused; 2 bad options.")
def replay(
    stack: StackOpt = None,
    job_id: Annotated[list[str] | None, typer.Option("--job-id", metavar="ID",
                                                     help="Only these jobs (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Only failures since: ISO time or a duration (2h).")] = None,
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

    stale = _duration(stale_after)
    if stale < EXPRESS_LIMIT and not force:
        raise fail(f"--stale-after {stale_after} is under the 5-minute EXPRESS limit: a running execution may still "
                   "hold such a claim (add --force to release it anyway)")
    since_time = _since(since)
    with _aws_errors():
        outputs = stack_outputs(_stack_name(stack, endpoint_url), profile, region, endpoint_url)
        ddb, sqs, events = (_aws_client(s, profile, region, endpoint_url) for s in ("dynamodb", "sqs", "events"))
        table = outputs["JobsTableName"]
        found: list[Any] = []
        try:
            found = replaying.find(ddb, sqs, table, outputs.get("RoutingFailureQueueUrl"),
                                   outputs.get("SubmittedEventsDLQUrl"), stale)
            done = replaying.replay(replaying.select(found, job_id, since_time, reason), ddb, sqs, events, table,
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


def _stack_name(stack: str | None, endpoint_url: str | None) -> str:
    from routing_manager.local.stack import STACK_NAME as LOCAL_STACK_NAME

    return stack or (LOCAL_STACK_NAME if endpoint_url else "routing-manager")


def _provider_table(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None) -> str:
    return _provider_stack(stack, profile, region, endpoint_url)[0]


def _provider_stack(stack: str | None, profile: str | None, region: str | None,
                    endpoint_url: str | None) -> tuple[str, str]:
    """The stack's control table and event bus."""
    name = _stack_name(stack, endpoint_url)
    outputs = stack_outputs(name, profile, region, endpoint_url)
    if "ProviderStateTableName" not in outputs:
        raise fail(f"stack {name} has no ProviderStateTableName output: deploy this version of template.yaml first",
                   EXIT_FAILED)
    return outputs["ProviderStateTableName"], outputs.get("EventBusName", "default")


# --- provider -----------------------------------------------------------------------------

def _known_scope(provider: str, model: str | None) -> tuple[str, str | None]:
    engine = _explain_engine()
    if provider not in engine.providers:
        raise fail(f"unknown provider {provider!r} (the routing table has: {', '.join(sorted(engine.providers))})")
    if model is not None and not model.strip():
        raise fail("--model: give a model name, or leave it out for the whole provider")
    return provider, model


def _kill_switch(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None,
                 change: Any) -> dict[str, Any]:
    """Make a kill-switch change on the stack's control table as the caller (audited and announced)."""
    from routing_manager import providers

    with _aws_errors():
        table, bus = _provider_stack(stack, profile, region, endpoint_url)
        ddb, events, sts = (_aws_client(s, profile, region, endpoint_url) for s in ("dynamodb", "events", "sts"))
        detail: dict[str, Any] = change(ddb, events, table, bus, providers.caller(sts))
    return detail


ModelOpt = Annotated[str | None, typer.Option(help="Only this model of the provider (default: the whole "
                                                   "provider).")]


@provider_app.command("disable", epilog="Exit codes: 0 disabled; 1 AWS unreachable or refused; 2 bad options.")
def provider_disable(
    provider: Annotated[str, typer.Argument(help="A provider of the routing table.", metavar="PROVIDER")],
    reason: Annotated[str, typer.Option(help="Why: kept in the audit trail and shown in every decision.")],
    model: ModelOpt = None,
    for_: Annotated[str | None, typer.Option("--for", help="Expire by itself after this long (30m, 2h); "
                                                           "default: until enabled.")] = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Pause a provider (or one model): jobs fall back along their chain; strict explicit jobs wait, replayable."""
    from routing_manager import providers

    provider, model = _known_scope(provider, model)
    if not reason.strip():
        raise fail("--reason: say why (it is shown in every decision that skips the provider)")
    seconds = _duration(for_).total_seconds() if for_ is not None else None
    detail = _kill_switch(stack, profile, region, endpoint_url, lambda ddb, events, table, bus, by: providers.disable(
        ddb, events, table, bus, provider, model, reason.strip(), seconds, by))
    where = provider + (f"/{model}" if model else "")
    until = f" until {detail['until']}" if detail["until"] else " until enabled"
    out.print(f"{_printable(where)} disabled{until}: {_printable(detail['reason'])}", markup=False, highlight=False)


@provider_app.command("enable", epilog="Exit codes: 0 enabled; 1 AWS unreachable or refused; 2 bad options.")
def provider_enable(
    provider: Annotated[str, typer.Argument(help="A provider of the routing table.", metavar="PROVIDER")],
    model: ModelOpt = None,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Lift a kill switch (the breaker and saturation keep their own state)."""
    from routing_manager import providers

    provider, model = _known_scope(provider, model)
    _kill_switch(stack, profile, region, endpoint_url, lambda ddb, events, table, bus, by: providers.enable(
        ddb, events, table, bus, provider, model, by))
    out.print(f"{_printable(provider + (f'/{model}' if model else ''))} enabled", markup=False, highlight=False)


@provider_app.command("status", epilog="Exit codes: 0 printed; 1 AWS unreachable or refused.")
def provider_status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per provider and model per line.")] = False,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Each provider's and model's state: available, disabled, open, half_open or saturated, and why."""
    from routing_manager import providers

    with _aws_errors():
        table_name = _provider_table(stack, profile, region, endpoint_url)
        lines = providers.status(_aws_client("dynamodb", profile, region, endpoint_url), table_name,
                                 _explain_engine().candidates())
    if as_json:
        for line in lines:
            out.print(json.dumps(line), markup=False, highlight=False)
        return
    view = Table(title="providers", title_justify="left")
    for column in ("provider", "model", "state", "reason", "until"):
        view.add_column(column, overflow="fold")
    for line in lines:
        view.add_row(*(_printable(line[key]) if line[key] is not None else "-"
                       for key in ("provider", "model", "state", "reason", "until")))
    out.print(view)


# --- graph --------------------------------------------------------------------------------

@app.command()
def graph(
    fmt: Annotated[str, typer.Option("--format", help="svg, png or mermaid.")] = "svg",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write (mermaid: default stdout).")] = (
        None),
    definition: Annotated[Path | None, typer.Option(help="ASL file (default: statemachine/routing.asl.json).")] = None,
) -> None:
    """Draw the workflow: every state, every transition, Catch edges dashed."""
    from routing_manager import graph as graphing

    if fmt not in ("svg", "png", "mermaid"):
        raise fail(f"--format {fmt!r}: use svg, png or mermaid")
    try:
        asl = graphing.load(definition or project.ASL)
    except (OSError, ValueError) as exc:
        raise fail(f"{definition or project.ASL}: {exc}") from None
    if fmt == "mermaid":
        text = graphing.mermaid(asl)
        if output is None:
            out.print(text, markup=False, highlight=False, end="")
        else:
            output.write_text(text)
        return
    target = output or Path(f"routing-graph.{fmt}")
    if target.suffix != f".{fmt}":
        raise fail(f"{target}: the file name must end in .{fmt}")
    needs("graph", "matplotlib")
    out.print(f"wrote {graphing.draw(asl, target)}")


# --- local stack --------------------------------------------------------------------------

@local_app.command("run")
def local_run(
    paths: Annotated[list[Path] | None, typer.Argument(help="Event files or folders (default: events/).",
                                                       metavar="PATH...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job per line.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the executions.")] = 60.0,
    lambda_log: Annotated[Path, typer.Option(help="Where the rules Lambda's log lines go.")] = Path(
        ".local/rules-lambda.log"),
    graph_file: Annotated[Path | None, typer.Option("--graph", help="Also draw the states the jobs took "
                                                                    "(.svg, .png or .mmd).")] = None,
) -> None:
    """Deploy the stack in process, publish each event through EventBridge, report each job."""
    from routing_manager.local import runner, stack
    from routing_manager.local.moto_adapters import MotoVersionError

    if graph_file is not None and graph_file.suffix not in (".svg", ".png", ".mmd"):
        raise fail(f"--graph {graph_file}: the file name must end in .svg, .png or .mmd")
    needs("local", "moto", "samtranslator")
    if graph_file is not None and graph_file.suffix != ".mmd":
        needs("graph", "matplotlib")
    try:
        files = expand_paths(paths or [project.EVENTS])
        events = [event for path in files for event in read_events(path)]
    except EventFileError as exc:
        raise fail(str(exc)) from None
    lambda_log.parent.mkdir(parents=True, exist_ok=True)
    # The status line first: in a terminal it proxies stdout above itself, and the Lambda's lines must
    # go past that proxy to the log file.
    real_stdout = sys.stdout
    log = lambda_log.open("w")
    try:
        with (err.status(f"deploying template.yaml and routing {len(events)} events ...") as status,
              contextlib.redirect_stdout(log), stack.running() as local):
            try:
                results = runner.publish_and_wait(local, events, timeout=timeout)
            except KeyboardInterrupt:  # report what ran so far; what was still running shows STUCK
                status.stop()
                results = [runner.summarise(e) for e in stack.wait_for_executions(local, 0, timeout=0)]
                _report(results, as_json, Console(file=real_stdout, soft_wrap=True, width=out.width))
                err.print(f"interrupted: {len(results)} of {len(events)} jobs reported", highlight=False)
                real_stdout.flush()
                sys.stderr.flush()
                # Executions still run in this process's threads, and the rules Lambda prints its metric
                # lines to stdout: end them here, still redirected, so --json stays parseable.
                os._exit(130)
    except KeyboardInterrupt:
        raise fail("interrupted before any job ran", 130) from None
    except MotoVersionError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    log.close()
    _report(results, as_json, out)
    if graph_file is not None:
        from collections import Counter

        from routing_manager import graph as graphing

        visits = Counter(state for r in results for state in dict.fromkeys(r.path))
        asl = graphing.load(project.ASL)
        if graph_file.suffix == ".mmd":
            graph_file.write_text(graphing.mermaid(asl, visits))
        else:
            graphing.draw(asl, graph_file, visits)
        err.print(f"wrote {graph_file}", highlight=False)
    if any(r.status == "STUCK" for r in results):
        raise fail(f"{sum(r.status == 'STUCK' for r in results)} executions still running after {timeout:g}s",
                   EXIT_FAILED)
    refused = [r for r in results if r.status == runner.REFUSED]
    if refused:
        raise fail(f"EventBridge refused {len(refused)} event{'s' * (len(refused) != 1)}: "
                   f"{_printable(refused[0].reason)}", EXIT_FAILED)
    lost = [r for r in results if r.status in runner.LOST_STATUSES]
    if lost:
        raise fail(f"{len(lost)} job{'s' * (len(lost) != 1)} ended outside the workflow's own paths, with no "
                   f"record or outcome event promised ({', '.join(sorted({r.status for r in lost}))})", EXIT_FAILED)


def _report(results: list[Any], as_json: bool, console: Console) -> None:
    from routing_manager.local import runner

    if as_json:
        for result in results:
            console.print(result.as_json(), markup=False, highlight=False)
    else:
        _print_results(results, runner.totals(results), console)


def _print_results(results: list[Any], totals: tuple[Any, Any], console: Console) -> None:
    # The whole path needs a wide table; a narrow terminal gets fewer columns and the state each job
    # ended in (--json always has everything).
    wide = console.width >= 150
    columns = ("jobId", "status", "provider/model", "queue", "reason", "path") if wide else (
        "jobId", "status", "routed to / reason", "ended in")
    table = Table(title="jobs", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in ("status", "ended in"))
    for r in results:
        target = f"{r.provider}/{r.model}" if r.provider else "-"
        job_id = "(none)" if r.jobId is None else _printable(r.jobId)
        reason = _printable(r.reason or "-")
        if wide:
            table.add_row(job_id, r.status, target, r.queue or "-", reason, " > ".join(r.path))
        else:
            table.add_row(job_id, r.status, f"{target} ({r.queue})" if r.provider else reason,
                          r.path[-1] if r.path else "-")
    console.print(table)
    by_status, by_queue = totals
    summary = Table(title="totals", title_justify="left")
    summary.add_column("by")
    summary.add_column("count", justify="right")
    for status, count in sorted(by_status.items()):
        summary.add_row(f"status {status}", str(count))
    for queue, count in sorted(by_queue.items()):
        summary.add_row(f"queue {queue}", str(count))
    console.print(summary)


@local_app.command("up", epilog="Exit codes: 0 stopped by SIGINT or SIGTERM; 2 the address cannot be used.")
def local_up(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the local AWS endpoint; 0 picks a free "
                                                             "one (the ready line says which).")] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the local stack over HTTP for real clients (boto3, aws --endpoint-url)."""
    import socket

    needs("local", "moto", "samtranslator")
    from routing_manager.local import server
    from routing_manager.local.moto_adapters import MotoVersionError

    try:  # moto's server binds in a thread of its own and would only print the failure: check first
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
            port = probe.getsockname()[1]
    except (OSError, OverflowError) as exc:
        raise fail(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    ready = sys.stdout
    # stdout carries exactly one line, the ready line; the rules Lambda's logs go to stderr.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            server.serve(host=host, port=port, announce=lambda line: print(line, file=ready, flush=True))
    except MotoVersionError as exc:
        raise fail(str(exc), EXIT_FAILED) from None


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
