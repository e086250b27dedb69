"""The routing strategies against simulated providers (issue 25 item 6, `make bench-routing`).

100,000 jobs (a mix of lengths and resolutions) arrive at RATE_PER_SEC of simulated time. Each strategy runs
the real Engine, the real LiveState (its cached read with read_stats) and the real statistics code
(stats.record_routed / record_outcome / read / summarise) over an in-memory control table, with the
simulated clock everywhere. No AWS. A third of the way through, one provider degrades (quality and
failures); two thirds through it recovers. The oracle knows the true parameters at every moment and
maximises the same objective as best-value; highestQuality always takes the best model.

    python bench/routing.py [--jobs N] [--out .local/bench/routing.json] [--plot docs/routing-strategies.png]
                            [--doc docs/ROUTING_STRATEGIES.md]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions" / "rules"))

from routing_core import stats  # noqa: E402
from routing_core.engine import Engine  # noqa: E402
from routing_core.live import LiveState  # noqa: E402
from routing_core.table import RoutingTable  # noqa: E402

RATE_PER_SEC = 0.2  # 720 jobs an hour
CACHE_SEC = 30.0  # the bench's LiveState cache (6 jobs); the rules function's is 2 s
MIN_QUALITY = 0.75
MAX_EXPLORATION = 0.1
SEED = 25
LENGTHS = [(5, 0.45), (8, 0.25), (10, 0.15), (15, 0.1), (30, 0.05)]
RESOLUTIONS = [("480p", 0.3), ("720p", 0.5), ("1080p", 0.2)]
RES_PRICE = {"480p": 0.5, "720p": 1.0, "1080p": 2.0}
RES_TIME = {"480p": 0.7, "720p": 1.0, "1080p": 1.8}
DRIFTING = "value"
# name: per-second price at 720p, median duration of a 5 s 720p clip, failure rate, quality mean
PROVIDERS = {
    "value": (0.05, 60.0, 0.03, 0.85),
    "fast": (0.06, 15.0, 0.02, 0.78),
    "budget": (0.03, 40.0, 0.04, 0.62),
    "premium": (0.15, 90.0, 0.01, 0.92),
}
DRIFT = (0.45, 0.25)  # the drifting provider's quality mean and failure rate while degraded
STRATEGIES = ("order", "cheapest", "fastest", "least-busy", "best-value")


def table(strategy: str) -> dict[str, Any]:
    providers = {name: {
        "queue": f"{name}-queue", "queueUrlEnv": f"{name.upper()}_QUEUE_URL", "defaultModel": "m",
        "prices": {"m": {"perSecondUsd": {r: round(price * f, 4) for r, f in RES_PRICE.items()},
                         "source": "simulated"}},
        "rateLimits": {"maxInFlight": 20},
        "dataPolicy": {"retainsInputs": False, "trainsOnInputs": False, "source": "simulated"},
    } for name, (price, *_) in PROVIDERS.items()}
    rule = {"name": "all", "when": {}, "strategy": strategy, "route": [{"provider": p} for p in PROVIDERS]}
    if strategy == "best-value":
        rule.update(minQuality=MIN_QUALITY, maxExploration=MAX_EXPLORATION)
    raw = {"version": 1, "providers": providers, "rules": [rule], "pricesReadOn": "2026-12-07"}
    return RoutingTable.model_validate(raw).model_dump(mode="json")


class ControlTable:
    """The DynamoDB calls LiveState and stats make, in memory: UpdateItem of ADDs, Query by pk (and sk >=)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict[str, Any]]] = {}  # sk -> item, pk "stats"

    def update_item(self, Key: dict[str, Any], ExpressionAttributeNames: dict[str, str],
                    ExpressionAttributeValues: dict[str, Any], **_: Any) -> None:
        sk = Key["sk"]["S"]
        item = self.items.get(sk)
        if item is None:
            item = self.items[sk] = {"pk": {"S": "stats"}, "sk": {"S": sk}}
        for alias, name in ExpressionAttributeNames.items():
            add = float(ExpressionAttributeValues[":" + alias[1:]]["N"])
            old = item.get(name)
            item[name] = {"N": repr(add + (float(old["N"]) if old else 0.0))}

    def query(self, ExpressionAttributeValues: dict[str, Any], **_: Any) -> dict[str, Any]:
        if ExpressionAttributeValues[":pk"]["S"] != "stats":
            return {"Items": []}
        since = ExpressionAttributeValues[":since"]["S"]
        stale = [sk for sk in self.items if sk < since]
        for sk in stale:  # older than any read: DynamoDB's TTL would have taken them
            del self.items[sk]
        return {"Items": list(self.items.values())}


def truth(provider: str, index: int, jobs: int) -> tuple[float, float]:
    """(quality mean, failure rate) of the provider at job `index`."""
    _, _, failure, quality = PROVIDERS[provider]
    if provider == DRIFTING and jobs // 3 <= index < 2 * jobs // 3:
        return DRIFT
    return quality, failure


def workload(jobs: int) -> list[tuple[float, int, str]]:
    rng = random.Random(SEED)
    lengths, lw = zip(*LENGTHS, strict=True)
    resolutions, rw = zip(*RESOLUTIONS, strict=True)
    t, out = 1_800_000_000.0, []
    for _ in range(jobs):
        t += rng.expovariate(RATE_PER_SEC)
        out.append((t, rng.choices(lengths, lw)[0], rng.choices(resolutions, rw)[0]))
    return out


def outcome(rng: random.Random, provider: str, index: int, jobs: int, length: int, resolution: str
            ) -> tuple[bool, float, float]:
    """(completed, durationSec, quality) drawn from the provider's true parameters."""
    quality_mean, failure = truth(provider, index, jobs)
    median = PROVIDERS[provider][1] * (length / 5) ** 0.8 * RES_TIME[resolution]
    duration = median * math.exp(rng.gauss(0, 0.35))
    if rng.random() < failure:
        return False, duration * 0.5, 0.0
    return True, duration, min(1.0, max(0.0, rng.gauss(quality_mean, 0.08)))


def oracle_choice(engine: Engine, index: int, jobs: int, length: int, resolution: str) -> str:
    best, best_value = "premium", -1.0
    for name in PROVIDERS:
        quality, failure = truth(name, index, jobs)
        expected = quality * (1 - failure)
        if expected < MIN_QUALITY:
            continue
        value = expected / engine.quote(name, "m", length, resolution, None)
        if value > best_value:
            best, best_value = name, value
    return best


def run(name: str, jobs: list[tuple[float, int, str]]) -> dict[str, Any]:
    n = len(jobs)
    engine = Engine(table("best-value" if name in ("oracle", "highestQuality") else name),
                    {f"{p.upper()}_QUEUE_URL": f"https://sqs.bench/{p}" for p in PROVIDERS})
    if name == "best-value":
        engine.rules[0][3].rng = random.Random(SEED)
    ddb, sim = ControlTable(), {"now": jobs[0][0]}
    live = LiveState("bench", client=ddb, max_age=CACHE_SEC, clock=lambda: sim["now"], read_stats=True,
                     wall_clock=lambda: sim["now"])
    rng = random.Random(SEED + 1)
    pending: list[tuple[float, int, str, bool, float, float, float]] = []
    chosen: list[str] = []
    costs: list[float] = []
    durations: list[float] = []
    qualities: list[tuple[int, float]] = []
    failures = 0
    for index, (t, length, resolution) in enumerate(jobs):
        while pending and pending[0][0] <= t:
            done, _, provider, completed, duration, quality, cost = heapq.heappop(pending)
            stats.record_outcome(ddb, "bench", provider, "m", done, counted=True, completed=completed,
                                 duration=duration, cost=cost if completed else None,
                                 quality=quality if completed else None)
        sim["now"] = t
        if name == "oracle":
            provider = oracle_choice(engine, index, n, length, resolution)
        elif name == "highestQuality":
            provider = "premium"
        else:
            decision = engine.decide({"jobId": f"j-{index}", "userId": "u", "prompt": "p", "lengthSec": length,
                                      "resolution": resolution}, availability=live.availability(may_probe=False))
            provider = decision["provider"] or "premium"
        quote = engine.quote(provider, "m", length, resolution, None)
        stats.record_routed(ddb, "bench", provider, "m", t, quote)
        completed, duration, quality = outcome(rng, provider, index, n, length, resolution)
        heapq.heappush(pending, (t + duration, index, provider, completed, duration, quality, quote))
        chosen.append(provider)
        costs.append(quote)
        if completed:
            durations.append(duration)
            qualities.append((index, quality))
        else:
            failures += 1
    durations.sort()
    return {
        "costPerJobUsd": round(sum(costs) / n, 4),
        "meanQuality": round(sum(q for _, q in qualities) / len(qualities), 4),
        "p50DurationSec": round(durations[len(durations) // 2], 1),
        "p95DurationSec": round(durations[int(len(durations) * 0.95)], 1),
        "failureRate": round(failures / n, 4),
        "jobsToReactToDrift": react(chosen, n),
        "_share": rolling(chosen, 1000), "_quality": rolling_quality(qualities, n, 1000),
    }


def react(chosen: list[str], n: int, window: int = 50) -> int | None:
    """Jobs after the drift until the share of the drifting provider over the last `window` jobs falls under
    half its share over the 2,000 jobs before the drift. 0: it hardly took the drifting provider (< 5 %);
    None: it never did react before the recovery."""
    start, end = n // 3, 2 * n // 3
    before = chosen[start - 2000:start].count(DRIFTING) / 2000
    if before < 0.05:
        return 0
    count = 0
    for k in range(start, end):
        count += chosen[k] == DRIFTING
        if k - start >= window:
            count -= chosen[k - window] == DRIFTING
        if k - start + 1 >= window and count / window < before / 2:
            return k - start + 1
    return None


def rolling(chosen: list[str], step: int) -> list[float]:
    return [chosen[i:i + step].count(DRIFTING) / len(chosen[i:i + step]) for i in range(0, len(chosen), step)]


def rolling_quality(qualities: list[tuple[int, float]], n: int, step: int) -> list[float | None]:
    sums = [0.0] * math.ceil(n / step)
    counts = [0] * math.ceil(n / step)
    for index, q in qualities:
        sums[index // step] += q
        counts[index // step] += 1
    return [round(s / c, 4) if c else None for s, c in zip(sums, counts, strict=True)]


def plot(results: dict[str, dict[str, Any]], n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (share, quality) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name, result in results.items():
        xs = [i * 1000 for i in range(len(result["_share"]))]
        style = "--" if name in ("oracle", "highestQuality") else "-"
        share.plot(xs, result["_share"], style, label=name)
        quality.plot(xs, result["_quality"], style, label=name)
    for axis in (share, quality):
        axis.axvspan(n // 3, 2 * n // 3, color="grey", alpha=0.15)
    share.set_ylabel(f"share of jobs to '{DRIFTING}'")
    quality.set_ylabel("mean quality (completed jobs)")
    quality.set_xlabel(f"job (grey: '{DRIFTING}' degraded)")
    share.legend(loc="upper right", fontsize=8)
    share.set_title("Routing strategies against simulated providers (make bench-routing)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(report: dict[str, Any], seconds: float, n: int) -> str:
    rows = [*report["strategies"].items(), ("oracle", report["oracle"]), ("highestQuality", report["highestQuality"])]
    lines = ["| strategy | cost per job | mean quality | p50 duration | p95 duration | failure rate | "
             "jobs to react to the drift |", "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        react_text = "never" if r["jobsToReactToDrift"] is None else str(r["jobsToReactToDrift"])
        lines.append(f"| {name} | ${r['costPerJobUsd']:.4f} | {r['meanQuality']:.4f} | {r['p50DurationSec']:g} s | "
                     f"{r['p95DurationSec']:g} s | {r['failureRate']:.2%} | {react_text} |")
    bv, oracle, top = report["strategies"]["best-value"], report["oracle"], report["highestQuality"]
    lines += ["", f"{n:,} jobs in {seconds:.0f} s. best-value: {bv['meanQuality'] / oracle['meanQuality']:.1%} of the "
              f"oracle's mean quality (target >= 95 %) at {bv['costPerJobUsd'] / top['costPerJobUsd']:.1%} of "
              f"highestQuality's cost (target <= 60 %); reacted to the drift in "
              f"{bv['jobsToReactToDrift']} jobs (target <= 200)."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench" / "routing.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "routing-strategies.png")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "ROUTING_STRATEGIES.md"), help="'': no doc")
    args = parser.parse_args()
    started = time.perf_counter()
    jobs = workload(args.jobs)
    results = {name: run(name, jobs) for name in (*STRATEGIES, "oracle", "highestQuality")}
    seconds = time.perf_counter() - started
    public = {name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()}
    report = {"strategies": {name: public[name] for name in STRATEGIES}, "oracle": public["oracle"],
              "highestQuality": public["highestQuality"],
              "setup": {"jobs": args.jobs, "ratePerSec": RATE_PER_SEC, "cacheSec": CACHE_SEC, "minQuality": MIN_QUALITY,
                        "maxExploration": MAX_EXPLORATION, "drifting": DRIFTING, "seconds": round(seconds, 1),
                        "providers": {p: dict(zip(("perSecondUsd720p", "medianSec5s720p", "failureRate",
                                                   "qualityMean"), v, strict=True)) for p, v in PROVIDERS.items()},
                        "drift": {"qualityMean": DRIFT[0], "failureRate": DRIFT[1],
                                  "fromJob": args.jobs // 3, "toJob": 2 * args.jobs // 3}}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.jobs, args.plot)
    text = markdown(report, seconds, args.jobs)
    print(text)
    doc_path = Path(args.doc) if args.doc else None
    if doc_path is not None and doc_path.is_file():
        doc = doc_path.read_text()
        begin, end = "<!-- bench-routing:begin -->", "<!-- bench-routing:end -->"
        if begin in doc and end in doc:
            doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}\n{end}", doc,
                         flags=re.S)
            doc_path.write_text(doc)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
