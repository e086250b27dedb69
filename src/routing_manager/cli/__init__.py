"""`routing-manager`: the operator CLI (explain, local stack, publish, replay, provider, graph, schemas).

This module holds the app, its sub-commands' groups and what the commands share: errors and exit
codes, AWS clients and the stack's outputs. The commands live in the modules beside it, by topic, and
register on `app` when imported at the bottom of this file. boto3, the engine, moto and the event
contract load inside the commands that use them: start-up time matters.

The commands look up `_aws_client` and `stack_outputs` here at call time (`cli._aws_client(...)`), so
that a test replaces them in one place.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from routing_manager import project


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

# Piped output (CI logs, files) gets a wide table rather than 80 folded columns.
out: Console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err: Console = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code)


# click's exceptions as typer raises them: its own copy of click in typer 0.2x, click itself before.
_click_errors = importlib.import_module(typer.BadParameter.__module__)
ClickException: type[Exception] = _click_errors.ClickException
UsageError: type[Exception] = _click_errors.UsageError
_click_globals = importlib.import_module(_click_errors.__name__.rpartition(".")[0] + ".globals")


def bad_usage(message: str, option: str | None = None) -> Exception:
    """A bad option or argument that a command finds itself: raised, it reads as click's own usage errors
    do (one line naming the command's help, exit 2)."""
    ctx = _click_globals.get_current_context(silent=True)
    if option is None:
        return UsageError(message, ctx=ctx)  # type: ignore[call-arg]
    return typer.BadParameter(message, ctx=ctx, param_hint=f"'{option}'")


def usage_line(exc: Any) -> str:
    """A usage error as the AWS CLI prints it: `<what> (see 'COMMAND --help')`, one line, no box."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if message[:1].isupper() and not message[1:2].isupper():  # "Missing option" -> "missing option", not "ISO"
        message = message[0].lower() + message[1:]
    ctx = exc.ctx or _innermost_context(exc) or _click_globals.get_current_context(silent=True)
    command = ctx.command_path if ctx is not None else "routing-manager"
    return f"{message} (see '{command} --help')"


def _innermost_context(exc: BaseException) -> Any:
    """The context of the command being parsed when click raised without naming it (`--for` given no
    value): the innermost frame of the traceback that holds one as `ctx`."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("ctx")
        if hasattr(candidate, "command_path"):
            found = candidate
        tb = tb.tb_next
    return found


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:  # BadParameter, MissingParameter, NoSuchOption, no such command
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise  # `routing-manager provider`: its help, as before
        raise fail(usage_line(exc), EXIT_BAD_INPUT) from None
    except ClickException as exc:
        raise fail(" ".join(exc.format_message().split()), exc.exit_code) from None  # type: ignore[attr-defined]


class OneLineErrors(typer.core.TyperGroup):
    """The root group: every usage error of every command under it (bad option or argument, unknown
    command, a value a parser, a callback or a command refuses with typer.BadParameter / UsageError)
    is one line on stderr and exit 2, instead of click's usage and typer's box. Sub-groups and commands
    are made and invoked inside the root's invoke, so this one class covers them all."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)


app: typer.Typer = typer.Typer(cls=OneLineErrors, help="Routing Manager operator tooling.", no_args_is_help=True,
                               add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})
local_app: typer.Typer = typer.Typer(
    help="The local stack: template.yaml deployed into moto, run in this process.", no_args_is_help=True)
table_app: typer.Typer = typer.Typer(
    help="The routing table (functions/rules/routing_table.json).", no_args_is_help=True)
provider_app: typer.Typer = typer.Typer(
    help="Provider availability on a deployed stack: status, kill switch.", no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(table_app, name="table")
app.add_typer(provider_app, name="provider")


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


def needs(extra: str, *modules: str) -> None:
    """The local stack and the pictures are extras: say which to install rather than fail on an import."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"this needs the [{extra}] extra ({', '.join(missing)} not installed): "
                   f"pip install 'routing-manager[{extra}]'", EXIT_FAILED)


def _printable(text: Any) -> str:
    """Control characters from job fields shown escaped, never written raw to the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) > 1 and text[-1] in units and text[:-1].isdigit():
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    raise typer.BadParameter(f"{text!r}: use a number and s, m, h or d, e.g. 15m")


def _explain_engine(router_region: str | None = None) -> Any:
    """The engine as deployed: the locked routing table, every provider's queue configured
    (placeholder URLs) unless the current environment names real ones. It decides a job's residency as a
    router in `router_region` would (default: the AWS region of the environment)."""
    from routing_core.loading import load_table

    table_path = Path(os.environ.get("ROUTING_TABLE_PATH") or project.RULES_FUNCTION / "routing_table.json")
    return explain_engine_of(load_table(table_path), router_region)


def explain_engine_of(table: dict[str, Any], router_region: str | None = None) -> Any:
    """An engine for `table` with every queue it names configured: the environment's URL, or a placeholder."""
    from routing_core.engine import Engine

    queues = [queue for spec in table["providers"].values()
              for queue in (spec, *(spec.get("priorityQueues") or {}).values(), *(spec.get("regions") or {}).values())]
    urls = {queue["queueUrlEnv"]: os.environ.get(queue["queueUrlEnv"]) or f"https://sqs.local/{queue['queue']}"
            for queue in queues}
    region = router_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return Engine(table, urls, region)


# --- AWS: clients, errors, the stack's outputs ----------------------------------------------

ProfileOpt = Annotated[str | None, typer.Option(help="AWS profile.")]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region.")]
EndpointOpt = Annotated[str | None, typer.Option(help="Endpoint URL, e.g. the local stack's.")]
StackOpt = Annotated[str | None, typer.Option(help="The deployed stack (its outputs name its tables, queues, bus). "
                                                   "Default: routing-manager, or the local stack's name with "
                                                   "--endpoint-url.")]


def _aws_client(service: str, profile: str | None, region: str | None, endpoint_url: str | None) -> Any:
    import boto3

    session = boto3.session.Session(profile_name=profile, region_name=region)
    return session.client(service, endpoint_url=endpoint_url)


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


def stack_outputs(stack_name: str, profile: str | None, region: str | None, endpoint_url: str | None) -> dict[str, str]:
    from botocore.exceptions import ClientError

    try:
        stack = _aws_client("cloudformation", profile, region, endpoint_url).describe_stacks(
            StackName=stack_name)["Stacks"][0]
    except ClientError as exc:
        raise fail(f"stack {stack_name}: {exc.response['Error']['Message']}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _stack_name(stack: str | None, endpoint_url: str | None) -> str:
    from routing_manager.local.stack import STACK_NAME as LOCAL_STACK_NAME

    return stack or (LOCAL_STACK_NAME if endpoint_url else "routing-manager")


def _stack_output(outputs: dict[str, str], name: str, stack: str) -> str:
    if name not in outputs:
        raise fail(f"stack {stack} has no {name} output: deploy this version of template.yaml first", EXIT_FAILED)
    return outputs[name]


def _provider_table(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None) -> str:
    return _provider_stack(stack, profile, region, endpoint_url)[0]


def _provider_stack(stack: str | None, profile: str | None, region: str | None,
                    endpoint_url: str | None) -> tuple[str, str]:
    """The stack's control table and event bus."""
    name = _stack_name(stack, endpoint_url)
    outputs = stack_outputs(name, profile, region, endpoint_url)
    return _stack_output(outputs, "ProviderStateTableName", name), outputs.get("EventBusName", "default")


# The commands, by topic: each module registers its commands on the app and groups above, in the order
# the help lists them.
from routing_manager.cli import explain, table, live_tables, publish, replay, graph, provider, stats, jobs, local  # noqa: E402, I001
from routing_manager.cli.local import _print_results  # noqa: E402  (the tests draw the results table)

__all__ = ["app", "explain", "graph", "jobs", "local", "provider", "publish", "replay", "stats", "table", "live_tables",
           "_print_results"]


def main() -> None:  # pragma: no cover - console entry
    app()
