"""Cost per million jobs on AWS, from requests measured on the local stack.

    python bench/cost_model.py            # prints the model, writes docs/cost-by-log-level.png

The measured inputs (AWS requests per job by service, DynamoDB item sizes, log bytes, history
events per execution) come from real executions of the real ASL on the local stack. Prices are
us-east-1 list prices; the assumptions AWS does not let us measure offline (execution and
Lambda durations on AWS, cold-start rate, X-Ray sampling) are named constants below.
"""

from __future__ import annotations

import json
import math
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# us-east-1 list prices (USD), as published on the AWS pricing pages in 2025.
PRICES = {
    "eventbridge_per_event": 1.00 / 1e6,           # custom events, per 64 KB chunk
    "sfn_express_per_request": 1.00 / 1e6,
    "sfn_express_per_gb_second": 0.00001667,        # first 1,000 GB-hours/month tier; 64 MB, 100 ms steps
    "lambda_per_request": 0.20 / 1e6,
    "lambda_arm_per_gb_second": 0.0000133334,       # also what the INIT phase is billed at
    "dynamodb_per_wru": 0.625 / 1e6,                # on-demand write request unit (1 KB)
    "dynamodb_per_rru": 0.125 / 1e6,                # on-demand read request unit (4 KB, strongly consistent)
    "sqs_per_request": 0.40 / 1e6,                  # standard queue, per 64 KB chunk
    "cloudwatch_putmetricdata_per_request": 0.01 / 1000,
    "logs_per_gb_ingested": 0.50,
    "xray_per_trace": 5.00 / 1e6,
}

# What cannot be measured offline: stated, and easy to change.
ASSUMPTIONS = {
    "express_duration_s": 0.3,        # claim, invoke, enqueue, mark, emit: ~10 calls at 10-30 ms on AWS
    "express_memory_gb": 0.0625,      # billed in 64 MB steps; the state here is a few KB
    "lambda_memory_gb": 0.25,         # 256 MB (template.yaml)
    "lambda_warm_duration_s": 0.002,  # the decision is microseconds; Powertools logging and EMF dominate
    "cold_start_rate": 0.001,         # one INIT per 1,000 invocations at steady load
    "rules_init_s": 0.35,             # Powertools + engine on a python3.12 arm64 cold start
    "single_lambda_init_s": 0.6,      # the same plus boto3 clients for DynamoDB, SQS, EventBridge
    "single_lambda_duration_s": 0.06, # three SDK calls in sequence from inside the function
    "xray_sampled": 0.0,              # Tracing=PassThrough (the default); Active samples 1/s, then 5 %: 0.05
    "lambda_platform_log_bytes": 0,   # SystemLogLevel WARN drops START and REPORT (330 bytes at INFO)
    "sfn_log_bytes_per_event": 350,   # one history event without execution data
    # Provider state: each warm rules environment reads the control table at most every 2 s
    # (routing_core.live.MAX_AGE_SEC), one strongly consistent Query of under 4 KB (1 read unit).
    "jobs_per_second_per_rules_environment": 5.0,
    "provider_state_read_units": 1,
    # Batch mode (issue 26), 100 jobs a video.job.batch.submitted: the execution claims 10 jobs at a time,
    # then sends and marks each send group of 10 (about 10 rounds of 2-3 calls at 10-30 ms), and holds
    # the plan of 100 decisions (tens of KB) in its state: billed at 128 MB, not 64.
    "batch_jobs": 100,
    "batch_express_duration_s": 2.0,
    "batch_express_memory_gb": 0.125,
}

LOG_LEVELS = ("OFF", "FATAL", "ERROR", "ALL")


def measure() -> dict[str, Any]:
    """Run a routed, a rejected and a duplicate job on the local stack; count what each cost."""
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "functions" / "rules"))
    from routing_manager.events import SubmittedEvent
    from routing_manager.local import runner, stack

    def detail(**changes: Any) -> dict[str, Any]:
        base = {"jobId": f"cost-{uuid.uuid4()}", "userId": "user-123",
                "prompt": "A corgi surfing on a beach at sunset, golden hour, cinematic", "lengthSec": 8,
                "resolution": "720p", "tier": "standard", "provider": "auto"}
        return {**base, **changes}

    routed, rejected = detail(), detail(lengthSec=30, resolution="1080p")
    printed: list[str] = []  # "[function] line", every line the functions' processes print
    with stack.running(echo_logs=printed.append) as local:
        rules = local.outputs["RulesFunctionName"]
        first = runner.publish_and_wait(local, [SubmittedEvent("frontend.api", "video.job.submitted", d, "cost")
                                                 for d in (routed, rejected)])
        second = runner.publish_and_wait(local, [SubmittedEvent("frontend.api", "video.job.submitted", routed,
                                                                "cost")])
        sfn = local.client("stepfunctions")
        paths: dict[str, Any] = {}
        for result in [*first, *second]:
            history = sfn.get_execution_history(executionArn=result.executionArn, maxResults=1000)["events"]
            services = Counter(e["taskScheduledEventDetails"]["resourceType"].removeprefix("aws-sdk:")
                               for e in history if "taskScheduledEventDetails" in e)
            transitions = sum(1 for e in history if e["type"].endswith("StateEntered"))
            paths[result.status] = {"requests": dict(services), "transitions": transitions,
                                    "history_events": len(history)}
        record = local.client("dynamodb").get_item(TableName=local.outputs["JobsTableName"],
                                                   Key={"jobId": {"S": routed["jobId"]}})["Item"]
    item_bytes = item_size(record)
    claim_bytes = item_size({k: v for k, v in record.items()
                             if k in ("jobId", "status", "claimedBy", "claimedAt", "submittedDetail", "attempts")})
    log_lines = [line for name, _, line in (p.partition("] ") for p in printed)
                 if name == f"[{rules}" and line.startswith("{")]
    invocations = sum(1 for line in log_lines if '"RoutingAttempts"' in line)  # one EMF line each, the duplicate's too
    return {"paths": paths, "item_bytes": item_bytes, "claim_bytes": claim_bytes,
            "lambda_log_bytes_per_invocation": sum(len(line) + 1 for line in log_lines) / invocations,
            "event_bytes": len(json.dumps(routed))}


def item_size(item: dict[str, Any]) -> int:
    """A DynamoDB item's billed size, by "DynamoDB item sizes and formats" (developer guide,
    CapacityUnitCalculations): names and strings in UTF-8 bytes, a number 1 byte per two significant
    digits + 1, null and Boolean 1 byte, a list or map 3 bytes + 1 per element + its elements. Measuring
    the JSON of the wire format instead counted ~10 bytes of type tags and quotes per attribute, and put
    the job record past 1 KB (a 2-unit mark) when it was not."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: dict[str, Any]) -> int:
    (kind, body), = value.items()
    if kind == "S":
        return len(body.encode())
    if kind == "N":
        digits = body.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in body)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + _value_size(v) for k, v in body.items())
    raise ValueError(f"no size rule here for DynamoDB type {kind}")


def _wru(size_bytes: float) -> int:
    return max(1, math.ceil(size_bytes / 1024))


def _write_units(m: dict[str, Any], writes: int) -> int:
    """The claim bills the claimed item; each later write bills the larger of before and after."""
    return _wru(m["claim_bytes"]) + max(0, writes - 1) * _wru(m["item_bytes"])


def router_cost(m: dict[str, Any], level: str, path: str = "ROUTED") -> dict[str, float]:
    """Dollars per million jobs of one path, by service, for the EXPRESS design."""
    p, a = PRICES, ASSUMPTIONS
    info = m["paths"][path]
    requests = info["requests"]
    mil = 1e6
    wru = _write_units(m, requests.get("dynamodb", 0))
    sfn_log_events = {"OFF": 0, "FATAL": 0, "ERROR": 0, "ALL": info["history_events"]}[level]
    billed_s = math.ceil(a["express_duration_s"] * 10) / 10
    lambda_s = requests.get("lambda", 0) * a["lambda_warm_duration_s"] + a["cold_start_rate"] * a["rules_init_s"]
    cost = {
        "EventBridge (submitted + outcome event)": (1 + requests.get("events", 0)) * p["eventbridge_per_event"],
        "Step Functions EXPRESS requests": p["sfn_express_per_request"],
        "Step Functions EXPRESS duration": billed_s * a["express_memory_gb"] * p["sfn_express_per_gb_second"],
        "Lambda requests": requests.get("lambda", 0) * p["lambda_per_request"],
        "Lambda duration and INIT": lambda_s * a["lambda_memory_gb"] * p["lambda_arm_per_gb_second"],
        "DynamoDB writes": wru * p["dynamodb_per_wru"],
        "SQS": requests.get("sqs", 0) * p["sqs_per_request"],
        "CloudWatch PutMetricData": requests.get("cloudwatch", 0) * p["cloudwatch_putmetricdata_per_request"],
        "CloudWatch Logs (Lambda)": requests.get("lambda", 0) * (
            m["lambda_log_bytes_per_invocation"] + a["lambda_platform_log_bytes"]) / 1e9 * p["logs_per_gb_ingested"],
        "CloudWatch Logs (workflow)": sfn_log_events * a["sfn_log_bytes_per_event"] / 1e9 * p["logs_per_gb_ingested"],
        "X-Ray": a["xray_sampled"] * p["xray_per_trace"],
        "DynamoDB provider-state reads": provider_state_reads_per_job() * a["provider_state_read_units"]
        * p["dynamodb_per_rru"],
    }
    return {k: v * mil for k, v in cost.items()}


def provider_state_reads_per_job(jobs_per_second: float | None = None) -> float:
    """One read per 2 s per environment, shared by the jobs it decides meanwhile; at most one per job."""
    sys.path.insert(0, str(ROOT / "functions" / "rules"))
    from routing_core.live import MAX_AGE_SEC

    rate = ASSUMPTIONS["jobs_per_second_per_rules_environment"] if jobs_per_second is None else jobs_per_second
    return min(1.0, 1.0 / (rate * MAX_AGE_SEC))


def batch_cost(m: dict[str, Any], level: str = "ERROR", jobs: int | None = None) -> dict[str, float]:
    """Dollars per million routed jobs when they come `jobs` to a video.job.batch.submitted. The per-job
    inputs (item sizes, the decision's log line) are the single job's measured ones; the requests per batch
    are the batch workflow's, as tests/workflow/test_batch.py counts them (docs/COST.md, "Batch mode"):
    one submitted event (per 64 KB chunk), one execution, one rules invoke deciding every job, the claim
    and the mark per job, one SendMessageBatch per 10 routed jobs (per 64 KB chunk), one outcome event per
    job (EventBridge bills entries, not calls) and one video.job.batch.routed summary."""
    p, a = PRICES, ASSUMPTIONS
    n = jobs or int(a["batch_jobs"])
    chunk = 64 * 1024
    submitted_chunks = math.ceil((n * (m["event_bytes"] + 2) + 100) / chunk)
    send_calls = math.ceil(n / 10) * max(1, math.ceil(10 * (m["event_bytes"] + 200) / chunk))
    wru = _write_units(m, m["paths"]["ROUTED"]["requests"].get("dynamodb", 2))
    billed_s = math.ceil(a["batch_express_duration_s"] * 10) / 10
    lambda_s = n * a["lambda_warm_duration_s"] + a["cold_start_rate"] * a["rules_init_s"]
    sfn_log_events = {"OFF": 0, "FATAL": 0, "ERROR": 0, "ALL": m["paths"]["ROUTED"]["history_events"]}[level]
    per_batch = {
        "EventBridge (batch event, outcome events, summary)": (submitted_chunks + n + 1) * p["eventbridge_per_event"],
        "Step Functions EXPRESS requests": p["sfn_express_per_request"],
        "Step Functions EXPRESS duration": billed_s * a["batch_express_memory_gb"] * p["sfn_express_per_gb_second"],
        "Lambda requests": p["lambda_per_request"],
        "Lambda duration and INIT": lambda_s * a["lambda_memory_gb"] * p["lambda_arm_per_gb_second"],
        "DynamoDB writes": n * wru * p["dynamodb_per_wru"],
        "SQS": send_calls * p["sqs_per_request"],
        "CloudWatch Logs (Lambda)": n * (m["lambda_log_bytes_per_invocation"] + a["lambda_platform_log_bytes"])
        / 1e9 * p["logs_per_gb_ingested"],
        # at LogLevel=ALL the history grows with the jobs: about the single job's events per job
        "CloudWatch Logs (workflow)": n * sfn_log_events * a["sfn_log_bytes_per_event"] / 1e9
        * p["logs_per_gb_ingested"],
        "X-Ray": a["xray_sampled"] * p["xray_per_trace"],
        "DynamoDB provider-state reads": provider_state_reads_per_job() * a["provider_state_read_units"]
        * p["dynamodb_per_rru"],  # one read per invoke at most, and a batch is one invoke
    }
    return {k: v / n * 1e6 for k, v in per_batch.items()}


def single_lambda_cost(m: dict[str, Any]) -> dict[str, float]:
    """The original design: one Lambda behind the rule doing the same writes, send and emit."""
    p, a = PRICES, ASSUMPTIONS
    requests = m["paths"]["ROUTED"]["requests"]
    wru = _write_units(m, requests.get("dynamodb", 0))
    seconds = a["single_lambda_duration_s"] + a["cold_start_rate"] * a["single_lambda_init_s"]
    cost = {
        "EventBridge (submitted + outcome event)": 2 * p["eventbridge_per_event"],
        "Lambda requests": p["lambda_per_request"],
        "Lambda duration and INIT": seconds * a["lambda_memory_gb"] * p["lambda_arm_per_gb_second"],
        "DynamoDB writes": wru * p["dynamodb_per_wru"],
        "SQS": p["sqs_per_request"],
        "CloudWatch Logs (Lambda)": (m["lambda_log_bytes_per_invocation"] + a["lambda_platform_log_bytes"])
        / 1e9 * p["logs_per_gb_ingested"],
        "X-Ray": a["xray_sampled"] * p["xray_per_trace"],
    }
    return {k: v * 1e6 for k, v in cost.items()}


def chart(m: dict[str, Any], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = sum(single_lambda_cost(m).values())
    fig, ax = plt.subplots(figsize=(7, 4))
    for path, style in (("ROUTED", "o-"), ("REJECTED", "s--")):
        ax.plot(LOG_LEVELS, [sum(router_cost(m, level, path).values()) for level in LOG_LEVELS], style,
                label=f"EXPRESS workflow, {path.lower()} job")
    ax.axhline(single, color="grey", linestyle=":", label="single Lambda, routed job")
    ax.axhline(5.0, color="red", linewidth=0.8, label="goal: $5 per million routed jobs")
    ax.set_xlabel("workflow logging level (LogLevel parameter; execution data never included)")
    ax.set_ylabel("USD per million jobs")
    ax.set_ylim(bottom=0)
    ax.set_title("Routing Manager cost per million jobs, us-east-1 list prices")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)


def main(chart_to: Path = ROOT / "docs" / "cost-by-log-level.png") -> dict[str, float]:
    m = measure()
    print("measured:", json.dumps(m, indent=1))
    for level in LOG_LEVELS:
        print(f"router, routed job, LogLevel={level}: ${sum(router_cost(m, level).values()):.2f} per million")
    default = router_cost(m, "ERROR")
    single = single_lambda_cost(m)
    for name, value in sorted(default.items(), key=lambda kv: -kv[1]):
        print(f"  {name:42s} ${value:.3f}")
    total, single_total = sum(default.values()), sum(single.values())
    print(f"single Lambda, routed job: ${single_total:.2f} per million; ratio {total / single_total:.2f}")
    batch = batch_cost(m)
    batch_total = sum(batch.values())
    print(f"batch mode ({ASSUMPTIONS['batch_jobs']:g} jobs a batch, modeled): ${batch_total:.2f} per million routed "
          f"jobs against ${total:.2f} one event each (goal <= $3.00)")
    for name, value in sorted(batch.items(), key=lambda kv: -kv[1]):
        print(f"  {name:50s} ${value:.3f}")
    chart_to.parent.mkdir(parents=True, exist_ok=True)
    chart(m, chart_to)
    state_reads = default["DynamoDB provider-state reads"]
    worst = provider_state_reads_per_job(0.01) * ASSUMPTIONS["provider_state_read_units"] * PRICES["dynamodb_per_rru"]
    print(f"provider state: +${state_reads:.4f} per million routed jobs at "
          f"{ASSUMPTIONS['jobs_per_second_per_rules_environment']:g} jobs/s per environment; at most "
          f"+${worst * 1e6:.3f} (jobs more than 2 s apart)")
    mandatory = ("EventBridge (submitted + outcome event)", "Step Functions EXPRESS requests",
                 "Step Functions EXPRESS duration", "Lambda requests", "Lambda duration and INIT", "DynamoDB writes",
                 "SQS")
    floor = sum(default[name] for name in mandatory)
    print(f"floor (the requests every routed job must make): ${floor:.2f} per million")
    figures = {"cost_per_million_usd": total, "cost_ratio_vs_single_lambda": total / single_total,
               "cost_floor_usd": floor,
               "cost_provider_state_per_million_usd": state_reads,
               "cost_provider_state_worst_per_million_usd": worst * 1e6,
               "cost_per_million_usd_log_all": sum(router_cost(m, "ALL").values()),
               "cost_per_million_usd_single_lambda": single_total,
               "cost_per_million_usd_batch_modeled": batch_total}
    for path, info in m["paths"].items():  # the cost model's measured inputs, flat for results.json
        name = path.lower()
        figures[f"{name}_state_transitions"] = float(info["transitions"])
        for service, count in info["requests"].items():
            figures[f"{name}_requests_{service}"] = float(count)
    return figures


if __name__ == "__main__":
    main()
