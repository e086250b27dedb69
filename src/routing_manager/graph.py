"""The workflow as a picture, the shape the Step Functions console draws: every state by
name, every transition, Catch edges dashed. Mermaid text, or SVG/PNG drawn with matplotlib
(pure PyPI wheels: no Graphviz binary to install)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # next | choice | default | catch
    label: str = ""


def edges(definition: dict[str, Any]) -> list[Edge]:
    found: list[Edge] = []
    for name, state in definition["States"].items():
        if "Next" in state:
            found.append(Edge(name, state["Next"], "next"))
        for index, choice in enumerate(state.get("Choices", []), 1):
            found.append(Edge(name, choice["Next"], "choice", f"rule {index}"))
        if "Default" in state:
            found.append(Edge(name, state["Default"], "default", "default"))
        for catch in state.get("Catch", []):
            errors = catch["ErrorEquals"]
            label = "all errors" if errors == ["States.ALL"] else ", ".join(e.split(".")[-1] for e in errors)
            found.append(Edge(name, catch["Next"], "catch", label))
    return found


def load(path: Path) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(path.read_text())
    return definition


def _layers(definition: dict[str, Any], all_edges: list[Edge]) -> dict[str, int]:
    """Longest path from StartAt: every edge points down, as in the console."""
    layer = {definition["StartAt"]: 0}
    outgoing: dict[str, list[str]] = defaultdict(list)
    for e in all_edges:
        outgoing[e.source].append(e.target)
    for _ in range(len(definition["States"])):  # relax; the workflow is acyclic
        changed = False
        for source in list(layer):
            for target in outgoing[source]:
                if layer.get(target, -1) < layer[source] + 1:
                    layer[target] = layer[source] + 1
                    changed = True
        if not changed:
            break
    for name in definition["States"]:
        layer.setdefault(name, 0)
    return layer


def mermaid(definition: dict[str, Any], visits: Counter[str] | None = None) -> str:
    lines = ["flowchart TD", "  start((start)) --> " + definition["StartAt"]]
    shapes = {"Choice": ("{", "}"), "Succeed": ("([", "])"), "Fail": ("([", "])"), "Pass": ("[/", "/]")}
    for name, state in definition["States"].items():
        left, right = shapes.get(state["Type"], ("[", "]"))
        count = f" ({visits[name]})" if visits and visits[name] else ""
        lines.append(f"  {name}{left}\"{name}{count}\"{right}")
        if state.get("End"):
            lines.append(f"  {name} --> finish((end))")
    for e in edges(definition):
        arrow = f"-.->|{e.label}|" if e.kind == "catch" else (f"-->|{e.label}|" if e.label else "-->")
        lines.append(f"  {e.source} {arrow} {e.target}")
    lines += ["  classDef fail fill:#f8d7da,stroke:#a33", "  classDef done fill:#d4edda,stroke:#393",
              "  classDef taken stroke:#06c,stroke-width:3px"]
    fails = [n for n, s in definition["States"].items() if s["Type"] == "Fail"]
    dones = [n for n, s in definition["States"].items() if s["Type"] == "Succeed"]
    if fails:
        lines.append(f"  class {','.join(fails)} fail")
    if dones:
        lines.append(f"  class {','.join(dones)} done")
    if visits:
        lines.append(f"  class {','.join(n for n in definition['States'] if visits[n])} taken")
    return "\n".join(lines) + "\n"


_COLOURS = {"Task": "#e8f0fe", "Choice": "#fff4d6", "Pass": "#f1f3f4", "Succeed": "#d4edda", "Fail": "#f8d7da"}


def draw(definition: dict[str, Any], target: Path, visits: Counter[str] | None = None) -> Path:
    """Render to SVG or PNG (by the file's suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, and testable
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    all_edges = edges(definition)
    layer = _layers(definition, all_edges)
    rows: dict[int, list[str]] = defaultdict(list)
    for name in definition["States"]:
        rows[layer[name]].append(name)
    position: dict[str, tuple[float, float]] = {}
    box_w, box_h, gap_x, gap_y = 2.6, 0.55, 3.0, 1.25
    for depth in sorted(rows):
        names = rows[depth]
        parents = {e.target: e.source for e in all_edges if e.source in position}
        names.sort(key=lambda n: position.get(parents.get(n, ""), (0.0, 0.0))[0])
        for index, name in enumerate(names):
            position[name] = ((index - (len(names) - 1) / 2) * gap_x, -depth * gap_y)
    width = max(len(r) for r in rows.values()) * gap_x + 1
    height = len(rows) * gap_y + 1
    fig, ax = plt.subplots(figsize=(max(8.0, width * 0.9), max(6.0, height * 0.9)))
    ax.set_axis_off()
    for e in all_edges:
        (x1, y1), (x2, y2) = position[e.source], position[e.target]
        taken = bool(visits and visits[e.source] and visits[e.target])
        colour = "#b33" if e.kind == "catch" else ("#06c" if taken else "#555")
        # An edge over more than one row bows out, the further the more rows it spans, so that it
        # passes beside the boxes between rather than through them; boxes are drawn over edges.
        span = abs(layer[e.target] - layer[e.source])
        bow = 0.0 if span <= 1 else min(0.45, 0.12 * span) * (1 if x2 >= x1 else -1)
        if e.kind == "catch":
            bow = bow or 0.08
        ax.annotate("", xy=(x2, y2 + box_h / 2), xytext=(x1, y1 - box_h / 2), zorder=1,
                    arrowprops={"arrowstyle": "-|>", "color": colour, "lw": 1.8 if taken else 0.9,
                                "linestyle": "--" if e.kind == "catch" else "-",
                                "connectionstyle": f"arc3,rad={bow}"})
        if e.label:
            ax.text((x1 + x2) / 2, (y1 + y2) / 2, e.label, fontsize=6, color=colour, ha="center", zorder=2,
                    bbox={"fc": "white", "ec": "none", "pad": 0.5})
    for name, (x, y) in position.items():
        kind = definition["States"][name]["Type"]
        taken = bool(visits and visits[name])
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.02,rounding_size=0.15",
                                    fc=_COLOURS.get(kind, "white"), ec="#06c" if taken else "#333",
                                    lw=2.2 if taken else 0.8, zorder=3))
        label = f"{name} ({visits[name]})" if taken and visits else name
        ax.text(x, y, label, ha="center", va="center", fontsize=8, weight="bold" if taken else "normal", zorder=4)
    xs = [p[0] for p in position.values()]
    ys = [p[1] for p in position.values()]
    ax.set_xlim(min(xs) - box_w, max(xs) + box_w)
    ax.set_ylim(min(ys) - 1, max(ys) + 1)
    ax.set_title("Routing Manager workflow (dashed: Catch)" + ("; bold: states the jobs took" if visits else ""))
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format=target.suffix.lstrip(".") or "svg")
    plt.close(fig)
    return target
