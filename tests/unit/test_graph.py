"""`routing-manager graph` renders the real ASL: every state, every transition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from routing_manager import graph, project
from routing_manager.cli import app

ASL = json.loads(project.ASL.read_text())


def test_mermaid_has_every_state_and_every_transition() -> None:
    result = CliRunner().invoke(app, ["graph", "--format", "mermaid"])
    assert result.exit_code == 0
    text = result.stdout
    for name in ASL["States"]:
        assert f'  {name}' in text, name
    for edge in graph.edges(ASL):
        arrow = "-.->" if edge.kind == "catch" else "-->"
        assert f"{edge.source} {arrow}" in text and edge.target in text
    catches = sum(len(s.get("Catch", [])) for s in ASL["States"].values())
    assert text.count("-.->") == catches
    assert 'AlreadyHandled(["AlreadyHandled"])' in text  # terminal states drawn as such


def test_svg_and_png_render_every_state(tmp_path: Path) -> None:
    svg = tmp_path / "g.svg"
    result = CliRunner().invoke(app, ["graph", "--format", "svg", "-o", str(svg)])
    assert result.exit_code == 0, result.output
    text = svg.read_text()
    assert all(f">{name}<" in text for name in ASL["States"])
    png = tmp_path / "g.png"
    assert CliRunner().invoke(app, ["graph", "--format", "png", "-o", str(png)]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_format_and_suffix_are_clear_errors(tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["graph", "--format", "dot"])
    assert bad.exit_code == 2 and "use svg, png or mermaid" in bad.stderr
    mismatch = CliRunner().invoke(app, ["graph", "--format", "png", "-o", str(tmp_path / "g.svg")])
    assert mismatch.exit_code == 2 and "must end in .png" in mismatch.stderr


def test_visits_mark_the_path_taken() -> None:
    from collections import Counter

    text = graph.mermaid(ASL, Counter({"CheckJobId": 2, "ClaimJob": 1}))
    assert '"CheckJobId (2)"' in text and '"ClaimJob (1)"' in text
    assert "class CheckJobId,ClaimJob taken" in text


@pytest.mark.local_stack
def test_local_run_draws_the_paths_taken(tmp_path: Path) -> None:
    target = tmp_path / "run.mmd"
    result = CliRunner().invoke(app, ["local", "run", "--graph", str(target), "--lambda-log",
                                      str(tmp_path / "l.log"), str(project.EVENTS / "routed-fal.json")])
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert '"EmitRouted (1)"' in text and '"EmitRejected"' in text


def test_the_pictures_in_docs_are_of_the_current_workflow() -> None:
    """`make graph` redraws them; this fails when the ASL changed and they were not redrawn."""
    assert (project.ROOT / "docs" / "routing-graph.mmd").read_text() == graph.mermaid(ASL)
    svg = (project.ROOT / "docs" / "routing-graph.svg").read_text()
    assert all(f">{name}<" in svg for name in ASL["States"]), "docs/routing-graph.svg: run make graph"
