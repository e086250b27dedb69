"""Benchmarks: prints the figures and writes them to .local/bench/ (`make bench`), or, with --record,
to the tracked bench/results.json and docs/cost-by-log-level.png (`make bench-record`).

    python bench/run.py [--jobs N] [--skip-local-stack] [--skip-console]
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
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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


# Every field of the job's `routing` object, consent and metadata: the most work preferences can ask for.
FULL_PREFERENCES = {"jobId": "j5", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p",
                    "routing": {"order": ["replicate"], "only": ["fal", "replicate"], "ignore": ["fal/other"],
                                "allowFallbacks": True, "sort": "price", "maxPriceUsd": 2.5},
                    "consent": {"consentGiven": False}, "metadata": {"customer": "acme", "campaign": "ab"}}


# Jobs the shipped table's first rule takes (short 720p clips, three length segments of the quality model): with
# `learned`, its strategy is best-value, so every one of these is ranked on the statistics and the model.
LEARNED_DETAILS = [
    {"jobId": "l1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"},
    {"jobId": "l2", "userId": "u", "prompt": "p", "lengthSec": 3, "resolution": "720p"},
    {"jobId": "l3", "userId": "u", "prompt": "p", "lengthSec": 10, "resolution": "720p"},
    {"jobId": "l4", "userId": "u", "prompt": "p", "lengthSec": 5, "resolution": "720p", "feature": {"audio": False}},
]
LEARNED_MODELS = (("fal", "wan-i2v"), ("replicate", "minimax/video-01"))


def learned_table_path() -> Path:
    """The shipped routing table with best-value (minQuality and an exploration cap) on its first rule."""
    from routing_core.loading import load_table

    table = load_table()
    table["rules"][0].update(strategy="best-value", minQuality=0.5, maxExploration=0.1)
    path = ROOT / ".local" / "bench" / "routing_table.learned.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(table))
    return path


def statistics_items(now: float) -> list[dict[str, object]]:
    """What the rules function's statistics Query returns from a busy control table: 3 h of 5-minute buckets
    (36) per model, ten outcomes each, and the fitted quality model (routing_core.quality) after them."""
    sys.path.insert(0, str(ROOT / "functions" / "quality_model"))
    import importlib.util

    from routing_core import stats

    spec = importlib.util.spec_from_file_location("quality_model_app", ROOT / "functions" / "quality_model" / "app.py")
    assert spec is not None and spec.loader is not None
    fitter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fitter)
    items: list[dict[str, object]] = []
    segments = []
    for provider, model in LEARNED_MODELS:
        for age in range(36):
            bucket = stats.bucket_of(now) - age * stats.BUCKET_SEC
            sums = {"samples": 10, "successes": 9, "durationCount": 10, "durationSum": 600, "durationSqSum": 40000,
                    "qualityCount": 9, "qualitySum": 6.3, "qualitySqSum": 4.5, "quoteCount": 10, "quoteSum": 6.4,
                    "routed": 10, "finished": 10}
            items.append({"pk": {"S": "stats"}, "sk": {"S": f"{bucket:010d}#{provider}#{model}"},
                          **{k: {"N": str(v)} for k, v in sums.items()}})
        for seg, good in (("0-5/720p/a0", 5), ("5-10/720p/a0", 9), ("10-20/720p/a0", 8)):
            segments.append({"sk": {"S": f"{int(now // 3600 * 3600):010d}#{provider}#{model}|{seg}"},
                             "samples": {"N": "10"}, "successes": {"N": str(good)}, "qualityCount": {"N": str(good)},
                             "qualitySum": {"N": str(good * 0.7)}})
    items.append(fitter.model_item(fitter.fit(segments, now)))
    return items


def engine_p50_us(details: list[dict[str, object]], n: int = 40_000) -> float:
    """The median of single decisions (timer overhead, ~0.1 us, included), best of 5 runs."""
    from routing_core.engine import Engine
    from routing_core.loading import load_table

    engine = Engine(load_table(), ENV)
    engine.known_models = {**engine.known_models, "fal": engine.known_models["fal"] | {"other"}}
    clock = time.perf_counter_ns
    medians = []
    for _ in range(5):
        samples = []
        for i in range(n):
            detail = details[i % len(details)]
            start = clock()
            engine.decide(detail)
            samples.append(clock() - start)
        medians.append(statistics.median(samples) / 1000)
    return min(medians)


def litellm_simple_shuffle_p50_us() -> float | None:
    """LiteLLM Router's simple-shuffle choice between two deployments, the peer figure: in the bench's own
    venv (.venv-tools/litellm, `make bench` installs it), None where it is not installed."""
    python = ROOT / ".venv-tools" / "litellm" / "bin" / "python"
    if not python.exists():
        return None
    code = PEER_CODE
    answer = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=600)
    if answer.returncode != 0:
        print(f"litellm peer figure not measured: {answer.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return float(answer.stdout.strip().splitlines()[-1])


PEER_CODE = """
import statistics, time, logging, os
os.environ["LITELLM_LOG"] = "ERROR"
from litellm import Router
router = Router(model_list=[
    {"model_name": "video", "litellm_params": {"model": "openai/wan-i2v", "api_key": "x", "rpm": 100}},
    {"model_name": "video", "litellm_params": {"model": "openai/minimax", "api_key": "x", "rpm": 100}},
], routing_strategy="simple-shuffle")
clock = time.perf_counter_ns
medians = []
for _ in range(5):
    samples = []
    for _ in range(20000):
        start = clock()
        router.get_available_deployment(model="video")
        samples.append(clock() - start)
    medians.append(statistics.median(samples) / 1000)
print(min(medians))
"""


def engine_us_per_decision() -> float:
    from routing_core.engine import Engine
    from routing_core.loading import load_table

    engine = Engine(load_table(), ENV)
    number = 50_000
    best = min(timeit.repeat(lambda: [engine.decide(d) for d in DETAILS], number=number // len(DETAILS), repeat=5))
    return best / number * 1e6


class _ControlTable:
    """Stands in for DynamoDB: the provider state a deployed function reads (a few scopes, one paused) and,
    with a shadow, the routing table pointer and version 1's body (a table whose first rule routes the other
    way round, so every job it matches disagrees and writes a disagreement: the costly case)."""

    def __init__(self, shadow: bool = False, learned: bool = False) -> None:
        self.queries = self.puts = 0
        self.shadow = shadow
        self.statistics = statistics_items(time.time()) if learned else []

    def query(self, **request: object) -> dict[str, object]:
        self.queries += 1
        values = request.get("ExpressionAttributeValues") or {}
        if isinstance(values, dict) and values.get(":pk") == {"S": "stats"}:
            return {"Items": self.statistics}
        items: list[dict[str, object]] = [
            {"pk": {"S": "state"}, "sk": {"S": "fal#wan-i2v-pro"}, "disabledReason": {"S": "bench"}},
            {"pk": {"S": "state"}, "sk": {"S": "replicate"}, "closedAt": {"N": "1"}},
            {"pk": {"S": "state"}, "sk": {"S": "fal"}, "saturatedSince": {"N": "1"}},
        ]
        if self.shadow:
            items.append({"pk": {"S": "state"}, "sk": {"S": "#table"}, "active": {"N": "0"}, "shadow": {"N": "1"},
                          "rev": {"N": "1"}})
        return {"Items": items}

    def get_item(self, **_: object) -> dict[str, object]:
        from routing_core import rollout
        from routing_core.loading import load_table

        table = load_table()
        table["rules"][0]["route"].reverse()
        body = rollout.body_of(table)
        return {"Item": {"body": {"S": body}, "sha256": {"S": rollout.digest(body)}}}

    def put_item(self, **_: object) -> dict[str, object]:
        self.puts += 1
        return {}


def handler_latency_us(n: int = 6000, shadow: bool = False, learned: bool = False) -> dict[str, float]:
    """The warm handler as deployed, provider state loaded (and re-read every 2 s) from a control table,
    and, interleaved in blocks so both see the same machine, without any provider state. With `shadow`,
    a published table decides every job again in shadow. With `learned`, the first rule is best-value and
    every job is one it ranks: the live statistics (3 h of buckets per model) and the fitted quality model
    are read with the provider state (every 2 s) and evaluated for each job."""
    os.environ.update({**ENV, "PROVIDER_STATE_TABLE": "bench-provider-state"})
    if learned:
        os.environ["ROUTING_TABLE_PATH"] = str(learned_table_path())
    details = LEARNED_DETAILS if learned else DETAILS
    sink = io.StringIO()  # stands in for the pipe Lambda reads stdout from
    with contextlib.redirect_stdout(sink):
        import app  # Powertools binds its log handler to the stdout of import time
    table = _ControlTable(shadow, learned)
    live = app.provider_state
    live._client = table

    context = SimpleNamespace(function_name="rules", memory_limit_in_mb=256, invoked_function_arn="arn:bench",
                              aws_request_id="bench", function_version="$LATEST")
    samples: dict[bool, list[float]] = {True: [], False: []}
    with contextlib.redirect_stdout(sink):
        for i in range(n):
            with_state = (i // 500) % 2 == 0
            app.provider_state = live if with_state else None
            event = {"detail": details[i % len(details)], "creditBalance": None}
            start = time.perf_counter()
            app.lambda_handler(event, context)
            samples[with_state].append((time.perf_counter() - start) * 1e6)
            if i % 500 == 0:
                sink.seek(0)
                sink.truncate()
    app.provider_state = live
    for block in samples.values():
        block.sort()
    with_state = samples[True]
    return {"handler_p50_us": statistics.median(with_state), "handler_p99_us": with_state[int(len(with_state) * 0.99)],
            "handler_without_provider_state_p50_us": statistics.median(samples[False]),
            "provider_state_reads": float(table.queries), "shadow_disagreements_written": float(table.puts)}


def handler_latency_best_of(processes: int = 3, shadow: bool = False, learned: bool = False) -> dict[str, float]:
    """handler_latency_us in fresh interpreters, the quietest one kept: on a shared machine one process's
    figures can be twice another's (as timeit advises, the minimum is the estimate noise inflates least)."""
    code = f"import json, run; print(json.dumps(run.handler_latency_us(shadow={shadow}, learned={learned})))"
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT / "bench", check=True,
                                      capture_output=True, text=True).stdout) for _ in range(processes)]
    return min(runs, key=lambda r: r["handler_p50_us"])


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


def _when(timestamp: object) -> datetime:
    """A history event's time: moto gives a datetime, or its ISO text once the event was serialised."""
    return timestamp if isinstance(timestamp, datetime) else datetime.fromisoformat(str(timestamp))


def local_stack(jobs: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT / "src"))
    from routing_manager.events import SubmittedEvent
    from routing_manager.local import runner, stack

    events = [SubmittedEvent("frontend.api", "video.job.submitted",
                             {"jobId": f"bench-{uuid.uuid4()}", "userId": "u", "prompt": "p", "lengthSec": 8,
                              "resolution": "720p"}, "bench") for _ in range(jobs)]
    with contextlib.redirect_stdout(io.StringIO()), stack.running() as local:
        start = time.perf_counter()
        # All at once: the local stack bounds the executions running at a time (bound_running_executions).
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
            windows.append((_when(exited["MarkRouted"]) - _when(exited["EnqueueJob"])).total_seconds() * 1000)
    routed = sum(r.status == "ROUTED" for r in results)
    if routed != jobs:
        raise SystemExit(f"local stack routed {routed} of {jobs} jobs")
    durations.sort()
    return {"local_stack_jobs": jobs, "local_stack_jobs_per_s": jobs / elapsed,
            "local_stack_p50_ms": statistics.median(durations),
            "local_stack_p95_ms": durations[int(len(durations) * 0.95)],
            "enqueue_to_mark_window_p50_ms": statistics.median(windows)}


def _task_failure(local: Any, arn: str) -> str:
    """The first failed task of an execution: its state, error and cause, as the console's history shows."""
    events = local.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    entered = ""
    for event in events:
        if "stateEnteredEventDetails" in event:
            entered = event["stateEnteredEventDetails"]["name"]
        for key in ("taskFailedEventDetails", "lambdaFunctionFailedEventDetails", "taskTimedOutEventDetails"):
            if key in event:
                return f"{entered}: {event[key].get('error')}: {str(event[key].get('cause'))[:300]}"
    return "no failed task in the history"


def local_stack_batches(batches: int, jobs_per_batch: int = 100) -> dict[str, float]:
    """Batch mode end to end: `batches` video.job.batch.submitted events of `jobs_per_batch` jobs each,
    published at once, timed until every batch execution has ended. A batch that failed must be on the
    failure queue, for replay, with none of its jobs claimed: anything else is a loss, and stops the bench.
    A failed batch is reported with its cause (on this machine: DecideTheBatch timed out while its
    control-table Query waited on the local stack's one Python process, busy with the other batches)."""
    sys.path.insert(0, str(ROOT / "src"))
    from routing_manager.local import runner, stack

    details = [{"batchId": f"bench-batch-{uuid.uuid4()}", "jobs": [
        {"jobId": f"bench-{uuid.uuid4()}", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}
        for _ in range(jobs_per_batch)]} for _ in range(batches)]
    with contextlib.redirect_stdout(io.StringIO()), stack.running() as local:
        start = time.perf_counter()
        executions = runner.publish_batches_and_wait(local, details, timeout=max(120.0, batches * 30.0))
        elapsed = time.perf_counter() - start
        records = Counter(str((local.record(j["jobId"]) or {}).get("status")) for d in details for j in d["jobs"])
        failed = [e for e in executions if e.status != "SUCCEEDED"]
        why = sorted({_task_failure(local, e.arn) for e in failed})
        parked = len(local.messages(local.outputs["RoutingFailureQueueUrl"]))
    routed = records["ROUTED"]
    unclaimed = records["None"]
    if len(executions) != batches or routed + unclaimed != batches * jobs_per_batch or \
            unclaimed != len(failed) * jobs_per_batch or parked != len(failed):
        raise SystemExit(f"batch mode lost jobs: routed {routed} of {batches * jobs_per_batch} (records "
                         f"{dict(records)}; {len(executions)} of {batches} executions seen, {len(failed)} failed, "
                         f"{parked} on the failure queue; {why})")
    if failed:
        print(f"local stack, batch mode: {len(failed)} of {batches} batches failed, each on the failure queue "
              f"for replay: {why}", flush=True)
    durations = sorted(((e.stop or e.start) - e.start) * 1000 for e in executions)
    return {"local_stack_batch_jobs": routed, "local_stack_batch_jobs_per_s": routed / elapsed,
            "local_stack_batch_p50_ms": statistics.median(durations),
            "local_stack_batches_failed": float(len(failed))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs end to end on the local stack")
    parser.add_argument("--skip-local-stack", action="store_true")
    parser.add_argument("--skip-console", action="store_true", help="skip the console page over 1,000 jobs (a minute)")
    parser.add_argument("--record", action="store_true",
                        help="write the tracked bench/results.json and docs chart (default: .local/bench/)")
    args = parser.parse_args()

    results: dict[str, float] = {}
    results["engine_us_per_decision"] = engine_us_per_decision()
    print(f"engine: {results['engine_us_per_decision']:.2f} us per decision (goal <= 10)", flush=True)
    results["engine_p50_us"] = engine_p50_us(DETAILS)
    results["engine_p50_us_full_preferences"] = engine_p50_us([FULL_PREFERENCES])
    print(f"engine p50: {results['engine_p50_us']:.2f} us without preferences, "
          f"{results['engine_p50_us_full_preferences']:.2f} us with a full routing object (goal <= 10)", flush=True)
    peer = litellm_simple_shuffle_p50_us()
    if peer is not None:
        results["litellm_simple_shuffle_p50_us"] = peer
        results["peer_ratio"] = results["engine_p50_us"] / peer
        results["peer_ratio_full_preferences"] = results["engine_p50_us_full_preferences"] / peer
        print(f"peer: LiteLLM simple-shuffle p50 {peer:.2f} us; ratio {results['peer_ratio']:.3f} without "
              f"preferences, {results['peer_ratio_full_preferences']:.3f} with (goal <= 0.2)", flush=True)
    else:
        print("peer: LiteLLM not installed in .venv-tools/litellm (make bench installs it): ratio not measured",
              flush=True)
    handler = handler_latency_best_of()
    results.update(handler)
    print(f"warm handler, provider state loaded: p50 {handler['handler_p50_us']:.1f} us, p99 "
          f"{handler['handler_p99_us']:.1f} us (goal p50 <= 100); without provider state p50 "
          f"{handler['handler_without_provider_state_p50_us']:.1f} us; {handler['provider_state_reads']:.0f} "
          "control-table read(s) for 3,000 decisions", flush=True)
    shadowed = handler_latency_best_of(shadow=True)
    results["handler_with_shadow_p50_us"] = shadowed["handler_p50_us"]
    results["handler_with_shadow_p99_us"] = shadowed["handler_p99_us"]
    print(f"warm handler, a shadow table deciding every job again: p50 {shadowed['handler_p50_us']:.1f} us, "
          f"p99 {shadowed['handler_p99_us']:.1f} us (goal p50 <= 100); "
          f"{shadowed['shadow_disagreements_written']:.0f} disagreement(s) written", flush=True)
    learned = handler_latency_best_of(learned=True)
    results["handler_learned_p50_us"] = learned["handler_p50_us"]
    results["handler_learned_p99_us"] = learned["handler_p99_us"]
    print(f"warm decision with statistics and a learned strategy (best-value, the quality model): p50 "
          f"{learned['handler_p50_us']:.1f} us, p99 {learned['handler_p99_us']:.1f} us (goal p50 <= 100), next to "
          f"the engine p50 {results['engine_p50_us']:.2f} us (goal <= 10); {learned['provider_state_reads']:.0f} "
          "control-table read(s), statistics with each", flush=True)
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
        print("local stack, batch mode: routing 10 batches of 100 jobs end to end ...", flush=True)
        results.update(local_stack_batches(10))
        print(f"local stack, batch mode: {results['local_stack_batch_jobs_per_s']:.1f} jobs/s "
              f"({results['local_stack_batch_jobs']:.0f} jobs in 10 batches of 100), batch execution p50 "
              f"{results['local_stack_batch_p50_ms']:.0f} ms; one job an event: "
              f"{results['local_stack_jobs_per_s']:.1f} jobs/s", flush=True)
    if not args.skip_local_stack:
        import cost_model

        print("cost model: measuring requests per job on the local stack ...", flush=True)
        chart = ROOT / "docs" if args.record else ROOT / ".local" / "bench"
        with contextlib.redirect_stdout(io.StringIO()):
            costs = cost_model.main(chart / "cost-by-log-level.png")
        results.update(costs)
        print(f"cost: ${costs['cost_per_million_usd']:.2f} per million routed jobs at LogLevel=ERROR "
              f"(goal <= $5.50; floor ${costs['cost_floor_usd']:.2f}), {costs['cost_ratio_vs_single_lambda']:.2f}x "
              "the single-Lambda design "
              f"(goal <= 1.4x); ${costs['cost_per_million_usd_log_all']:.2f} at LogLevel=ALL", flush=True)
        print(f"cost, batch mode (100 jobs a batch; requests as the batch workflow makes them, its duration assumed): "
              f"${costs['cost_per_million_usd_batch_modeled']:.2f} per million routed jobs (goal <= $3.00) against "
              f"${costs['cost_per_million_usd']:.2f} one event each", flush=True)
    if not args.skip_local_stack and not args.skip_console:
        import console_page

        print("console: the executions page over 1,000 jobs on local up ...", flush=True)
        page = console_page.measure()
        results.update(page)
        print(f"console: /console over {page['console_page_jobs']:.0f} jobs in {page['console_page_s']:.2f} s "
              f"({page['console_page_kb']:.0f} KB; goal <= 1 s)", flush=True)
    out = ROOT / "bench" / "results.json" if args.record else ROOT / ".local" / "bench" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **{k: round(v, 3) for k, v in results.items()}}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
