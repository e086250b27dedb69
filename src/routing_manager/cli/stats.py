"""`routing-manager provider stats`: the live statistics per (provider, model) on a deployed stack."""

from __future__ import annotations

import json
import time
from typing import Annotated

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
    fail,
    out,
    provider_app,
)

_COLUMNS = ("provider", "model", "samples", "successRate", "durationEwmaSec", "durationP90Sec", "qualityMean",
            "qualityStdDev", "costRatio", "inFlight", "lastOutcomeAt")


@provider_app.command("stats", epilog="Exit codes: 0 printed; 1 AWS unreachable or refused; 2 bad options.")
def provider_stats(
    provider: Annotated[str | None, typer.Option(help="Only this provider's models.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per provider and model per line.")] = False,
    stack: StackOpt = None,
    profile: ProfileOpt = None,
    region: RegionOpt = None,
    endpoint_url: EndpointOpt = None,
) -> None:
    """What the outcomes of the last 24 h say of each model: success rate, duration, quality, cost, in flight
    (means decay with a 1 h half-life; docs/ROUTING_STRATEGIES.md)."""
    from routing_core import stats

    known = [(p, m) for p, m in _explain_engine().candidates() if m is not None]
    if provider is not None and provider not in {p for p, _ in known}:
        raise fail(f"unknown provider {provider!r} (the routing table has: {', '.join(sorted({p for p, _ in known}))})")
    with _aws_errors():
        table_name = _provider_table(stack, profile, region, endpoint_url)
        now = time.time()
        items = stats.read(cli._aws_client("dynamodb", profile, region, endpoint_url), table_name, now)
    lines = [line for line in stats.summarise(items, now, known) if provider is None or line["provider"] == provider]
    if as_json:
        for line in lines:
            out.print(json.dumps(line), markup=False, highlight=False)
        return
    view = Table(title="provider statistics (last 24 h, 1 h half-life)", title_justify="left")
    for column in _COLUMNS:
        view.add_column(column, overflow="fold")
    for line in lines:
        view.add_row(*(_printable(line[key]) if line[key] is not None else "-" for key in _COLUMNS))
    out.print(view)
