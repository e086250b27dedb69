"""`routing-manager local run|up`: the local stack, in this process or served over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from routing_manager import project
from routing_manager.cli import EXIT_FAILED, _printable, bad_usage, err, fail, local_app, needs, out
from routing_manager.cli.table import routing_table_option

LogsOpt = Annotated[bool, typer.Option("--logs", help="Print every line the functions print to stderr, as "
                                                      "[FunctionName] line.")]
RoutingTableOpt = Annotated[Path | None, typer.Option(
    parser=routing_table_option, metavar="FILE",
    help="Use this routing table instead of the bundled one (checked as `table validate` checks it).")]


@local_app.command("run")
def local_run(
    paths: Annotated[list[Path] | None, typer.Argument(help="Event files or folders (default: events/).",
                                                       metavar="PATH...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job per line.")] = False,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the executions.")] = 60.0,
    lambda_log: Annotated[Path, typer.Option(help="Where the functions' log lines go ([FunctionName] line).")] = Path(
        ".local/rules-lambda.log"),
    graph_file: Annotated[Path | None, typer.Option("--graph", help="Also draw the states the jobs took "
                                                                    "(.svg, .png or .mmd).")] = None,
    logs: LogsOpt = False,
    routing_table: RoutingTableOpt = None,
) -> None:
    """Deploy the stack in process, publish each event through EventBridge, report each job."""
    from routing_manager.events import EventFileError, expand_paths, read_events

    if graph_file is not None and graph_file.suffix not in (".svg", ".png", ".mmd"):
        raise bad_usage(f"{graph_file}: the file name must end in .svg, .png or .mmd", "--graph")
    needs("local", "moto", "samtranslator")
    if graph_file is not None and graph_file.suffix != ".mmd":
        needs("graph", "matplotlib")
    from routing_manager.local import runner, stack
    from routing_manager.local.moto_adapters import MotoVersionError

    try:
        files = expand_paths(paths or [project.EVENTS])
        events = [event for path in files for event in read_events(path)]
    except EventFileError as exc:
        raise fail(str(exc)) from None
    lambda_log.parent.mkdir(parents=True, exist_ok=True)
    # The status line first: in a terminal it proxies stdout above itself, and what prints to stdout in
    # this process must go past that proxy to the log file.
    real_stdout = sys.stdout
    log = lambda_log.open("w")
    environment = {"ROUTING_TABLE_PATH": str(routing_table.resolve())} if routing_table else None
    interrupted = threading.Event()
    try:
        with (err.status(f"deploying template.yaml and routing {len(events)} events ...") as status,
              contextlib.redirect_stdout(log),
              stack.running(function_environment=environment, echo_logs=_log_lines(log, logs)) as local,
              _ctrl_c_sets(interrupted)):
            results = runner.publish_and_wait(local, events, timeout=timeout, stop=interrupted)
            if interrupted.is_set():  # report what ran so far; what was still running shows STUCK
                status.stop()
                _report(results, as_json, Console(file=real_stdout, soft_wrap=True, width=out.width))
                err.print(f"interrupted: {len(results)} of {len(events)} jobs reported", highlight=False)
                real_stdout.flush()
                sys.stderr.flush()
                # Executions still run in this process's threads: end them here, still redirected, so
                # --json stays parseable.
                os._exit(130)
    except KeyboardInterrupt:
        raise fail("interrupted before any job ran", 130) from None
    except MotoVersionError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    log.close()
    _report(results, as_json, out)
    if graph_file is not None:
        _draw_visits(results, graph_file)
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


@contextlib.contextmanager
def _ctrl_c_sets(interrupted: threading.Event) -> Iterator[None]:
    """While jobs run, Ctrl-C only sets `interrupted`: a KeyboardInterrupt raised wherever the main thread
    happened to be (inside moto, under a lock) could be lost or leave a lock held, and the run would then
    wait out its timeout. The watchdog ends the process if the report itself cannot finish."""
    from routing_manager.local.server import exit_anyway_after

    def on_ctrl_c(*_: object) -> None:
        if not interrupted.is_set():
            interrupted.set()
            exit_anyway_after(30.0, 130, "interrupted: the report did not finish in 30 s")

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _log_lines(log: Any, echo: bool) -> Callable[[str], None]:
    """Each function's line ("[FunctionName] line") into the --lambda-log file, and with --logs to stderr
    too. Lines come from every environment's reader thread: one at a time."""
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            if not log.closed:
                log.write(line + "\n")
                log.flush()
            if echo:
                err.print(line, markup=False, highlight=False)

    return write


def _draw_visits(results: list[Any], graph_file: Path) -> None:
    from collections import Counter

    from routing_manager import graph as graphing

    visits = Counter(state for r in results for state in dict.fromkeys(r.path))
    asl = graphing.load(project.ASL)
    if graph_file.suffix == ".mmd":
        graph_file.write_text(graphing.mermaid(asl, visits))
    else:
        graphing.draw(asl, graph_file, visits)
    err.print(f"wrote {graph_file}", highlight=False)


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


@local_app.command("up", epilog="Exit codes: 0 stopped by SIGINT or SIGTERM; 2 a bad option, or the address "
                                "cannot be used.")
def local_up(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port of the local AWS endpoint; 0 picks a free "
                                                             "one (the ready line says which).")] = 5000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    logs: LogsOpt = False,
    routing_table: RoutingTableOpt = None,
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
    ready, logs_to = sys.stdout, sys.stderr
    lock = threading.Lock()

    def echo(line: str) -> None:
        with lock:
            print(line, file=logs_to, flush=True)

    # stdout carries exactly one line, the ready line; whatever else prints in this process goes to stderr.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            server.serve(host=host, port=port, announce=lambda line: print(line, file=ready, flush=True),
                         routing_table=routing_table, echo_logs=echo if logs else None)
    except MotoVersionError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
