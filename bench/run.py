"""Benchmarks: prints the figures and writes them to .local/bench/ (`make bench`), or, with --record,
to the tracked bench/results.json and docs/cost-by-log-level.png (`make bench-record`).

    python bench/run.py [--jobs N] [--skip-local-stack]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
import timeit
import uuid
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "functions" / "rules"
sys.path.insert(0, str(RULES))
ENV = {"FAL_QUEUE_URL": "https://sqs.bench/FalJobQueue", "REPLICATE_QUEUE_URL": "https://sqs.bench/ReplicateJobQueue"}
DETAILS = [
    {"jobId": "j1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"},
    {"jobId": "j2", "userId": "u", "prompt": "p", "lengthSec": 30, "resolution": "1080p"},
    {"jobId": "j3", "userId": "u", "prompt": "p", "provider": "replicate", "lengthSec": 60},
    {"jobId": "j4", "userId": "u", "prompt": "p", "lengthSec": "8"},
]


def engine_us_per_decision() -> float:
    from routing_core.engine import Engine
    from routing_core.loading import load_table

    engine = Engine(load_table(), ENV)
    number = 50_000
    best = min(timeit.repeat(lambda: [engine.decide(d) for d in DETAILS], number=number // len(DETAILS), repeat=5))
    return best / number * 1e6


def handler_latency_us(n: int = 5000) -> tuple[float, float]:
    os.environ.update(ENV)
    sink = io.StringIO()  # stands in for the pipe Lambda reads stdout from
    with contextlib.redirect_stdout(sink):
        import app  # Powertools binds its log handler to the stdout of import time

    context = SimpleNamespace(function_name="rules", memory_limit_in_mb=256, invoked_function_arn="arn:bench",
                              aws_request_id="bench", function_version="$LATEST")
    samples = []
    with contextlib.redirect_stdout(sink):
        for i in range(n):
            event = {"detail": DETAILS[i % len(DETAILS)], "creditBalance": None}
            start = time.perf_counter()
            app.lambda_handler(event, context)
            samples.append((time.perf_counter() - start) * 1e6)
            if i % 500 == 0:
                sink.seek(0)
                sink.truncate()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def cold_init(runs: int = 21) -> tuple[float, float, float, float]:
    """Median wall time of `import app` in a fresh interpreter and of `python -c pass`,
    interleaved so both see the same machine; plus the import's peak RSS."""
    env = {**os.environ, **ENV, "PYTHONDONTWRITEBYTECODE": "1"}
    importer = "import app, resource, sys; sys.stderr.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))"
    bare, cold, rss = [], [], []
    subprocess.run([sys.executable, "-c", "import app"], cwd=RULES, env=env, check=True)  # warm the .pyc cache
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - start)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", importer], cwd=RULES, env=env, check=True,
                              capture_output=True, text=True)
        cold.append(time.perf_counter() - start)
        rss.append(int(done.stderr.strip()) / 1024)
    b, c = statistics.median(bare), statistics.median(cold)
    return c / b, c * 1000, b * 1000, statistics.median(rss)


def local_stack(jobs: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "src"))
    from routing_manager.events import SubmittedEvent
    from routing_manager.local import runner, stack

    events = [SubmittedEvent("frontend.api", "video.job.submitted",
                             {"jobId": f"bench-{uuid.uuid4()}", "userId": "u", "prompt": "p", "lengthSec": 8,
                              "resolution": "720p"}, "bench") for _ in range(jobs)]
    with contextlib.redirect_stdout(io.StringIO()), stack.running() as local:
        start = time.perf_counter()
        results = runner.publish_and_wait(local, events, timeout=max(120.0, jobs * 0.5))
        elapsed = time.perf_counter() - start
        durations, windows = [], []
        for r in results:
            execution = stack.describe_execution(r.executionArn)
            durations.append(((execution.stop or execution.start) - execution.start) * 1000)
        # The one at-least-once window (docs/RELIABILITY.md): from EnqueueJob's end to MarkRouted's.
        from routing_manager.local.moto_adapters import read_execution

        for r in results[:50]:
            exited = {e["stateExitedEventDetails"]["name"]: e["timestamp"]
                      for e in read_execution(r.executionArn)[1] if "stateExitedEventDetails" in e}
            windows.append((exited["MarkRouted"] - exited["EnqueueJob"]).total_seconds() * 1000)
    routed = sum(r.status == "ROUTED" for r in results)
    if routed != jobs:
        raise SystemExit(f"local stack routed {routed} of {jobs} jobs")
    durations.sort()
    return {"local_stack_jobs": jobs, "local_stack_jobs_per_s": jobs / elapsed,
            "local_stack_p50_ms": statistics.median(durations),
            "local_stack_p95_ms": durations[int(len(durations) * 0.95)],
            "enqueue_to_mark_window_p50_ms": statistics.median(windows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs end to end on the local stack")
    parser.add_argument("--skip-local-stack", action="store_true")
    parser.add_argument("--record", action="store_true",
                        help="write the tracked bench/results.json and docs chart (default: .local/bench/)")
    args = parser.parse_args()

    results: dict[str, float] = {}
    results["engine_us_per_decision"] = engine_us_per_decision()
    print(f"engine: {results['engine_us_per_decision']:.2f} us per decision (goal <= 10)", flush=True)
    p50, p99 = handler_latency_us()
    results.update(handler_p50_us=p50, handler_p99_us=p99)
    print(f"warm handler: p50 {p50:.1f} us, p99 {p99:.1f} us (goal p50 <= 100)", flush=True)
    ratio, cold_ms, bare_ms, rss = cold_init()
    results.update(cold_init_ratio=ratio, cold_init_ms=cold_ms, bare_interpreter_ms=bare_ms, cold_init_peak_rss_mb=rss)
    print(f"cold init: {cold_ms:.1f} ms vs bare {bare_ms:.1f} ms = {ratio:.2f}x (goal <= 6x), "
          f"peak RSS {rss:.1f} MB", flush=True)
    if not args.skip_local_stack:
        print(f"local stack: routing {args.jobs} jobs end to end ...", flush=True)
        results.update(local_stack(args.jobs))
        print(f"local stack: {results['local_stack_jobs_per_s']:.1f} jobs/s, execution p50 "
              f"{results['local_stack_p50_ms']:.1f} ms, p95 {results['local_stack_p95_ms']:.1f} ms "
              "(goal >= 50 jobs/s)", flush=True)
        print(f"enqueue-to-mark window (the at-least-once window): p50 "
              f"{results['enqueue_to_mark_window_p50_ms']:.1f} ms", flush=True)
    if not args.skip_local_stack:
        import cost_model

        print("cost model: measuring requests per job on the local stack ...", flush=True)
        chart = ROOT / "docs" if args.record else ROOT / ".local" / "bench"
        with contextlib.redirect_stdout(io.StringIO()):
            costs = cost_model.main(chart / "cost-by-log-level.png")
        results.update(costs)
        print(f"cost: ${costs['cost_per_million_usd']:.2f} per million routed jobs at LogLevel=ERROR "
              f"(goal <= $5), {costs['cost_ratio_vs_single_lambda']:.2f}x the single-Lambda design "
              f"(goal <= 1.4x); ${costs['cost_per_million_usd_log_all']:.2f} at LogLevel=ALL", flush=True)
    out = ROOT / "bench" / "results.json" if args.record else ROOT / ".local" / "bench" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **{k: round(v, 3) for k, v in results.items()}}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
