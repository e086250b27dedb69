"""`routing-manager provider status|disable|enable`: provider availability on a deployed stack."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
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
    _duration,
    _explain_engine,
    _printable,
    _provider_table,
    _stack_name,
    _stack_output,
    fail,
    out,
    provider_app,
)

POLL_SEC = 0.2  # between two dry runs of the deployed rules function (--wait)
RUNBOOK = 'see docs/RUNBOOK.md "control state unreadable"'


class WaitFailed(Exception):
    """The deployed rules function does not (yet) decide with the change: the message says why."""


def wait_until_decided(lam: Any, function: str, scope: str, disabled: bool, written_at: float, timeout: float,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> float:
    """Dry-run the deployed rules function with the heartbeat's canary job until its decision shows
    `scope` ("provider" or "provider#model") disabled (or, `disabled` False, no longer disabled); then
    wait out the cache bound (routing_core.live.MAX_AGE_SEC) from the write, so that every environment
    decides with it. The seconds since the write (`written_at`, on `clock`); raises WaitFailed when the
    function cannot read its control table, fails, or still decides with the old state after `timeout`."""
    from routing_core.live import MAX_AGE_SEC

    from routing_manager.providers import CANARY_JOB

    payload = json.dumps({"detail": CANARY_JOB, "dryRun": True}).encode()
    while True:
        response = lam.invoke(FunctionName=function, Payload=payload)
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError") or not isinstance(answer, dict):
            error = answer.get("errorType") if isinstance(answer, dict) else answer
            raise WaitFailed(f"the rules function {function} failed: {error}")
        if answer.get("liveState") in ("stale", "unread"):
            age = answer.get("liveStateAgeSec")
            raise WaitFailed(f"the rules function cannot read its control table: it decides with {answer['liveState']}"
                             f" provider state{f' (age {age} s)' if age is not None else ''} ({RUNBOOK})")
        states = {name: state for entry in answer.get("providers") or [] for name, state in entry["states"].items()}
        if scope not in states:
            raise WaitFailed(f"the rules function {function} reports no state for {scope} (deploy this version "
                             "of the stack, with the same routing table)")
        if (states[scope] == "disabled") == disabled:
            break
        if clock() - written_at >= timeout:
            raise WaitFailed(f"the rules function still decides with the old state after {timeout:g} s ({RUNBOOK})")
        sleep(POLL_SEC)
    cached = written_at + MAX_AGE_SEC - clock()  # an environment's read from before the write, at its oldest
    if cached > 0:
        sleep(cached)
    return clock() - written_at


def _known_scope(provider: str, model: str | None, region: str | None = None) -> tuple[str, str | None]:
    engine = _explain_engine()
    if provider not in engine.providers:
        raise fail(f"unknown provider {provider!r} (the routing table has: {', '.join(sorted(engine.providers))})")
    if region is not None:
        regions = [entry[0] for entry in engine.providers[provider]["regions"]]
        if region not in regions:
            listed = f"the routing table lists: {', '.join(regions)}" if regions else \
                "it lists no regions in the routing table; leave --provider-region out"
            raise fail(f"--provider-region {region!r}: {provider} does not serve from it ({listed})")
    if model is not None and not model.strip():
        raise fail("--model: give a model name (or leave it out for the whole provider)")
    models = sorted({m for p, m in engine.candidates() if p == provider and m is not None})
    if model is not None and model not in models:
        raise fail(f"--model {model!r}: not a model of {provider} (the routing table has: {', '.join(models)})")
    return provider, model


def _for(text: str) -> timedelta:
    """--for: a duration over zero. Zero would be no end at all, a permanent disable."""
    duration = _duration(text)
    if duration <= timedelta(0):
        raise typer.BadParameter(f"{text!r}: give more than 0 (leave --for out to disable until enabled)")
    return duration


def _kill_switch(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None,
                 change: Callable[..., dict[str, Any]], scope: str, disabled: bool, wait: bool, wait_timeout: float,
                 as_json: bool) -> None:
    """Make a kill-switch change on the stack's control table as the caller (audited and announced) and
    print it; with --wait, only once the deployed rules function decides with it."""
    from routing_manager import providers

    with _aws_errors():
        name = _stack_name(stack, endpoint_url)
        outputs = cli.stack_outputs(name, profile, region, endpoint_url)
        table = _stack_output(outputs, "ProviderStateTableName", name)
        function = _stack_output(outputs, "RulesFunctionName", name) if wait else ""  # missing: before any write
        ddb, events, sts = (cli._aws_client(s, profile, region, endpoint_url) for s in ("dynamodb", "events", "sts"))
        try:
            detail = change(ddb, events, table, outputs.get("EventBusName", "default"), providers.caller(sts))
        except RuntimeError as exc:  # written, but not announced: PutEvents refused the entry
            raise fail(str(exc), EXIT_FAILED) from None
        written_at = time.monotonic()
        if not as_json:
            out.print(_printable(_change_line(detail)), markup=False, highlight=False)
        if not wait:
            if as_json:
                out.print(json.dumps({**detail, "waitedSec": None}), markup=False, highlight=False)
            return
        try:
            waited = wait_until_decided(cli._aws_client("lambda", profile, region, endpoint_url), function, scope,
                                        disabled, written_at, wait_timeout)
        except WaitFailed as exc:
            if as_json:
                out.print(json.dumps({**detail, "waitedSec": None}), markup=False, highlight=False)
            raise fail(str(exc), EXIT_FAILED) from None
    if as_json:
        out.print(json.dumps({**detail, "waitedSec": round(waited, 1)}), markup=False, highlight=False)
    else:
        out.print(f"the rules function decides with it: {waited:.1f} s after the change", highlight=False)


def _change_line(detail: dict[str, Any]) -> str:
    where = detail["provider"] + (f"/{detail['model']}" if detail["model"] else "") + (
        f" in {detail['providerRegion']}" if detail.get("providerRegion") else "")
    if detail["state"] != "disabled":
        return f"{where} enabled"
    until = f" until {detail['until']}" if detail["until"] else " until enabled"
    return f"{where} disabled{until}: {detail['reason']}"


ModelOpt = Annotated[str | None, typer.Option(help="Only this model of the provider (default: the whole "
                                                   "provider).")]
ProviderRegionOpt = Annotated[str | None, typer.Option(
    "--provider-region", metavar="REGION", help="Only in this region of the provider (its routing table `regions`); "
                                                "jobs fail over to its other regions. --region stays the AWS region.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Return once the deployed rules function decides with "
                                                      "the change, and every environment's cache has it.")]
WaitTimeoutOpt = Annotated[float, typer.Option(min=1, metavar="SECONDS", help="With --wait: give up (exit 1) "
                                                                              "after this long.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the change as one JSON object (waitedSec: the "
                                                      "seconds --wait took).")]


@provider_app.command("disable", epilog="Exit codes: 0 disabled; 1 AWS unreachable or refused, or --wait gave up; "
                                        "2 bad options.")
def provider_disable(
    provider: Annotated[str, typer.Argument(help="A provider of the routing table.", metavar="PROVIDER")],
    reason: Annotated[str, typer.Option(help="Why: kept in the audit trail and shown in every decision.")],
    model: ModelOpt = None,
    provider_region: ProviderRegionOpt = None,
    for_: Annotated[timedelta | None, typer.Option("--for", parser=_for, metavar="DURATION",
                                                   help="Expire by itself after this long (30m, 2h); default: "
                                                        "until enabled.")] = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 10.0,
    as_json: JsonOpt = False,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Pause a provider (or one model): jobs fall back along their chain; strict explicit jobs wait, replayable."""
    from routing_core.availability import scope

    from routing_manager import providers

    provider, model = _known_scope(provider, model, provider_region)
    if not reason.strip():
        raise fail("--reason: say why (it is shown in every decision that skips the provider)")
    seconds = for_.total_seconds() if for_ is not None else None
    _kill_switch(stack, profile, region, endpoint_url, lambda ddb, events, table, bus, by: providers.disable(
        ddb, events, table, bus, provider, model, reason.strip(), seconds, by, provider_region),
        scope(provider, model, provider_region), True, wait, wait_timeout, as_json)


@provider_app.command("enable", epilog="Exit codes: 0 enabled; 1 AWS unreachable or refused, or --wait gave up; "
                                       "2 bad options.")
def provider_enable(
    provider: Annotated[str, typer.Argument(help="A provider of the routing table.", metavar="PROVIDER")],
    model: ModelOpt = None,
    provider_region: ProviderRegionOpt = None,
    wait: WaitOpt = False,
    wait_timeout: WaitTimeoutOpt = 10.0,
    as_json: JsonOpt = False,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """Lift a kill switch (the breaker and saturation keep their own state)."""
    from routing_core.availability import scope

    from routing_manager import providers

    provider, model = _known_scope(provider, model, provider_region)
    _kill_switch(stack, profile, region, endpoint_url, lambda ddb, events, table, bus, by: providers.enable(
        ddb, events, table, bus, provider, model, by, provider_region), scope(provider, model, provider_region), False,
        wait, wait_timeout, as_json)


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
        engine = _explain_engine()
        lines = providers.status(cli._aws_client("dynamodb", profile, region, endpoint_url), table_name,
                                 [*engine.candidates(), *engine.region_scopes()])
    if as_json:
        for line in lines:
            out.print(json.dumps(line), markup=False, highlight=False)
        return
    view = Table(title="providers", title_justify="left")
    columns = ("provider", "model", "providerRegion", "state", "reason", "until")
    for column in columns:
        view.add_column("region" if column == "providerRegion" else column, overflow="fold")
    for line in lines:
        view.add_row(*(_printable(line[key]) if line[key] is not None else "-" for key in columns))
    out.print(view)
