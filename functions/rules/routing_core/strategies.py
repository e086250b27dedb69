"""How a rule orders its candidates from the live statistics (issue 25 item 3): `strategy` per rule, and the
job's own `routing.sort`. Plain Python (no numpy): the rules Lambda imports it at cold start.

- order (the default): the rule's order.  cheapest: the lowest quote first (engine.py sorts by the quote).
- fastest: the lowest `durationEwmaSec` first.
- least-busy: the lowest `inFlight / maxInFlight` first; `rateLimits.maxInFlight` (per model, else per
  provider, else 1: the raw in-flight count) is its denominator; rate_limits.py enforces it as an admission limit.
- best-value: Thompson sampling. Per model a Beta posterior of the quality of a job, a failed job counting
  as quality 0: `alpha = 1 + Σw·q`, `beta = 1 + Σw·(1 - q) + Σw·failures`, from the statistics' decayed sums.
  One draw per candidate; those whose draw reaches the rule's `minQuality` are ranked by draw per dollar of
  the quote, the rest after them by draw. A model with few outcomes has a wide posterior, so it gets
  explored. A job whose first candidate is not the posterior MEANS' first is an exploration; once a rule's
  explorations reach its `maxExploration` share (of the jobs it ranked in this environment) the means decide.

A model the statistics have no duration for ranks FIRST in `fastest` (in the rule's order): it is tried until
its first outcome gives it a figure, so a new model, or one unused for the statistics' 3 hours, is learnt
rather than never chosen. In `least-busy` a model with no row has nothing in flight. `best-value` explores
an unknown model through its prior, Beta(1, 1).
Every ranking returns the figures it used, for the decision's explanation. Without statistics (the control
table unread) each strategy keeps the rule's order and says so.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

STRATEGIES = ("order", "cheapest", "fastest", "least-busy", "best-value")
SORT_STRATEGY = {"price": "cheapest", "latency": "fastest", "quality": "best-value"}  # routing.sort -> strategy
DEFAULT_MAX_EXPLORATION = 0.1

Candidate = tuple[str, str, float]  # provider, model, quote
Stats = Mapping[tuple[str, str], Mapping[str, Any]]  # (provider, model) -> a line of stats.summarise


class Strategy:
    """One rule's strategy, compiled once per table; best-value keeps its exploration count here."""

    __slots__ = ("name", "min_quality", "max_exploration", "ranked", "explored", "rng")

    def __init__(self, name: str = "order", min_quality: float | None = None,
                 max_exploration: float | None = None, rng: random.Random | None = None) -> None:
        self.name = name
        self.min_quality = min_quality
        self.max_exploration = DEFAULT_MAX_EXPLORATION if max_exploration is None else max_exploration
        self.ranked = 0  # jobs best-value ranked in this environment
        self.explored = 0  # ... of which its first candidate was not the posterior means' first
        self.rng = rng or random.Random()

    @property
    def uses_stats(self) -> bool:
        return self.name in ("fastest", "least-busy", "best-value")

    def rank(self, quoted: list[Candidate], stats: Stats | None, max_in_flight: Mapping[tuple[str, str], int],
             stats_note: str | None = None, predicted: Mapping[tuple[str, str], Mapping[str, Any] | None] | None = None
             ) -> tuple[list[Candidate], dict[str, Any]]:
        """The candidates in this strategy's order, and what the explanation says about it."""
        info: dict[str, Any] = {"strategy": self.name}
        if stats_note:
            info["statsNote"] = stats_note
        if stats is None:
            info["ranking"] = "no statistics read: the rule's order"
            return quoted, info
        if self.name == "fastest":
            figures = {_label(c): _figure(stats, c, "durationEwmaSec") for c in quoted}
            ranked = _by_known(quoted, figures)
            info.update(figure="durationEwmaSec", figures=figures,
                        ranking="unknown first (to learn it), then the lowest durationEwmaSec")
        elif self.name == "least-busy":
            figures = {}
            for c in quoted:
                flight = _figure(stats, c, "inFlight")
                cap = max_in_flight.get((c[0], c[1])) or max_in_flight.get((c[0], "")) or 1
                figures[_label(c)] = None if flight is None else round(flight / cap, 4)
            ranked = _by_known(quoted, figures)
            info.update(figure="inFlight/maxInFlight", figures=figures, ranking="lowest load first")
        elif self.name == "best-value":
            ranked = self._best_value(quoted, stats, info, predicted or {})
        else:
            return quoted, info
        return ranked, info

    def _best_value(self, quoted: list[Candidate], stats: Stats, info: dict[str, Any],
                    predicted: Mapping[tuple[str, str], Mapping[str, Any] | None]) -> list[Candidate]:
        floor = self.min_quality or 0.0
        draws: dict[str, float] = {}
        means: dict[str, float] = {}
        shown: dict[str, Any] = {}
        labels: list[str] = []
        for c in quoted:
            key = (c[0], c[1])
            label = f"{c[0]}/{c[1]}"
            labels.append(label)
            alpha, beta = posterior(stats.get(key))
            prediction = predicted.get(key) if predicted else None
            if prediction is not None:
                alpha, beta = adjusted(alpha, beta, prediction)
                shown[label] = dict(prediction)
            draws[label] = round(self.rng.betavariate(alpha, beta), 4)
            means[label] = round(alpha / (alpha + beta), 4)
        greedy = _by_value(quoted, labels, means, floor)
        sampled = _by_value(quoted, labels, draws, floor)
        self.ranked += 1
        explores = sampled[0] != greedy[0]
        capped = explores and self.explored >= self.max_exploration * self.ranked
        if explores and not capped:
            self.explored += 1
        ranked = greedy if capped else sampled
        if shown:
            info["predicted"] = shown  # the quality model's figures for the job's segment (routing_core.quality)
        info.update(figure="quality of a job (failure = 0), Beta posterior" + (
                    ", adjusted to the job's segment by the quality model" if shown else ""),
                    draws=draws, posteriorMeans=means,
                    minQuality=self.min_quality, explored=explores and not capped,
                    ranking=("posterior means per dollar (the exploration cap "
                             f"{self.max_exploration:g} is reached)" if capped else
                             "sampled quality per dollar among draws >= minQuality, then the rest by draw"))
        return ranked


def posterior(line: Mapping[str, Any] | None) -> tuple[float, float]:
    """Beta(alpha, beta) of a job's quality from a stats line's decayed sums; Beta(1, 1) with none."""
    if not line:
        return 1.0, 1.0
    weight = line.get("qualityWeight") or 0.0
    mean = line.get("qualityMean")
    good = weight * mean if mean is not None else 0.0
    return 1.0 + good, 1.0 + (weight - good) + (line.get("failureWeight") or 0.0)


def adjusted(alpha: float, beta: float, prediction: Mapping[str, Any]) -> tuple[float, float]:
    """The posterior moved to the job's segment, its strength (alpha + beta) kept: the live mean times the
    segment's ratio to its (provider, model) average; with no live data (Beta(1, 1)) the predicted expected
    quality itself. Live data keep their recency (the drift), the model adds what the segment does differently."""
    strength = alpha + beta
    mean = alpha / strength
    target = prediction["expectedQuality"] if strength <= 2.0 else mean * prediction["ratio"]
    target = min(0.999, max(0.001, target))
    return target * strength, (1.0 - target) * strength


def _label(c: Candidate) -> str:
    return f"{c[0]}/{c[1]}"


def _figure(stats: Stats, c: Candidate, name: str) -> float | None:
    line = stats.get((c[0], c[1]))
    value = line.get(name) if line else None
    if name == "inFlight" and value is None:
        return 0.0  # nothing routed there in the statistics' span
    return value


def _by_known(quoted: list[Candidate], figures: Mapping[str, float | None]) -> list[Candidate]:
    known = sorted((c for c in quoted if figures[_label(c)] is not None), key=lambda c: figures[_label(c)] or 0.0)
    return [c for c in quoted if figures[_label(c)] is None] + known  # sorted() is stable: ties in rule order


def _by_value(quoted: list[Candidate], labels: list[str], quality: Mapping[str, float],
              floor: float) -> list[Candidate]:
    """Those reaching `floor` by quality per dollar, then the rest by quality; ties in the rule's order
    (sort is stable). `labels[i]` is `quoted[i]`'s key in `quality`, made once per ranking."""
    fit: list[tuple[float, Candidate]] = []
    rest: list[tuple[float, Candidate]] = []
    for c, label in zip(quoted, labels, strict=True):
        q = quality[label]
        if q >= floor:
            fit.append((-q / max(c[2], 1e-9), c))
        else:
            rest.append((-q, c))
    fit.sort(key=_first)
    rest.sort(key=_first)
    return [c for _, c in fit] + [c for _, c in rest]


def _first(pair: tuple[float, Candidate]) -> float:
    return pair[0]
