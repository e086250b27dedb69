"""`routing-manager graph`: the workflow as a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from routing_manager import project
from routing_manager.cli import app, bad_usage, fail, needs, out


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
        raise bad_usage(f"{fmt!r}: use svg, png or mermaid", "--format")
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
        raise bad_usage(f"{target}: the file name must end in .{fmt}", "--output")
    needs("graph", "matplotlib")
    out.print(f"wrote {graphing.draw(asl, target)}")
