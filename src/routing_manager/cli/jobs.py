"""`routing-manager job show JOBID` and `jobs list`: where a job is, from what the stack already keeps.

The record (Jobs table) says what was decided; the rules function's decision line (its log group) says why;
the state machine's log group (LoggingConfiguration, level ALL for a path) says which states each execution
took and when; the record's `executions` list is the replay history. No store of its own: what expired or was
never written is shown as missing, not as an error. docs/JOBS_AND_CONSOLE.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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
    _printable,
    _stack_name,
    _stack_output,
    app,
    fail,
    out,
)

job_app: typer.Typer = typer.Typer(help="One job's whole story: record, decision, path, replays.",
                                   no_args_is_help=True)
jobs_app: typer.Typer = typer.Typer(help="Jobs in the Jobs table, newest first.", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(jobs_app, name="jobs")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (one object per line for lists).")]
OUTCOMES = {"ROUTED": "routed", "REJECTED": "rejected", "FAILED": "failed", "CLAIMED": "in_progress"}
BY_STATUS_INDEX = "ByStatus"
EMITS = {"EmitRouted": "video.job.routed", "EmitRejected": "video.job.rejected",
         "EmitUnavailable": "video.job.rejected", "EmitFailed": "video.job.rejected"}


@dataclass
class _Stack:
    name: str
    outputs: dict[str, str]
    ddb: Any
    logs: Any
    cfn: Any

    @property
    def jobs_table(self) -> str:
        return _stack_output(self.outputs, "JobsTableName", self.name)


def _stack(stack: str | None, profile: str | None, region: str | None, endpoint_url: str | None) -> _Stack:
    name = _stack_name(stack, endpoint_url)
    outputs = cli.stack_outputs(name, profile, region, endpoint_url)
    return _Stack(name, outputs, *(cli._aws_client(s, profile, region, endpoint_url)
                                   for s in ("dynamodb", "logs", "cloudformation")))


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {key: _number(deserializer.deserialize(value)) for key, value in item.items()}


def _number(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_number(v) for v in value]
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    return value


def _detail(record: dict[str, Any]) -> dict[str, Any]:
    try:
        detail = json.loads(record.get("submittedDetail") or "")
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _reason(record: dict[str, Any]) -> str | None:
    return record.get("rejectionReason") or record.get("failureReason")


def _at(record: dict[str, Any]) -> str | None:
    return record.get("routedAt") or record.get("rejectedAt") or record.get("failedAt") or record.get("claimedAt")


def _log_events(target: _Stack, group: str | None, term: str) -> list[dict[str, Any]] | None:
    """Every JSON line of a log group holding `term`; None when the group is gone or never was."""
    if not group:
        return None
    from botocore.exceptions import ClientError

    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"logGroupName": group, "filterPattern": json.dumps(term)}
    try:
        while True:
            page = target.logs.filter_log_events(**kwargs)
            for event in page.get("events", []):
                try:
                    found.append(json.loads(event["message"]))
                except ValueError:
                    continue
            if not page.get("nextToken"):
                return found
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise


def _rules_log_group(target: _Stack) -> str | None:
    from botocore.exceptions import ClientError

    try:  # every resource: moto answers a LogicalResourceId filter (and DescribeStackResource) with a 500
        resources = target.cfn.describe_stack_resources(StackName=target.name)["StackResources"]
    except ClientError:
        return None
    return next((r.get("PhysicalResourceId") for r in resources
                 if r.get("LogicalResourceId") == "RulesFunctionLogGroup"), None)


def _ms(text: Any) -> int:
    return int(str(text))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _execution(arn: str, lines: list[dict[str, Any]] | None) -> dict[str, Any]:
    """One execution from its log lines: states in order with when each was entered and how long it took."""
    if lines is None:
        return {"executionArn": arn, "status": "unknown", "log": "missing", "states": [], "startedAt": None}
    lines = sorted((line for line in lines if line.get("execution_arn") == arn), key=lambda line: int(line["id"]))
    if not lines:
        return {"executionArn": arn, "status": "unknown", "log": "expired or not written (LogLevel ALL keeps it)",
                "states": [], "startedAt": None}
    states: list[dict[str, Any]] = []
    status = "RUNNING"
    for line in lines:
        kind, at = line["type"], _ms(line["event_timestamp"])
        if kind.endswith("StateEntered"):
            states.append({"state": line["details"].get("name"), "enteredAt": _iso(at), "_at": at,
                           "durationMs": None, "result": None})
        elif kind.endswith("StateExited") and states:
            states[-1]["durationMs"] = at - states[-1]["_at"]
            states[-1]["result"] = states[-1]["result"] or "ok"
        elif kind in ("TaskFailed", "TaskTimedOut", "LambdaFunctionFailed") and states:
            states[-1]["result"] = "caught" if states[-1]["result"] is None else states[-1]["result"]
            states[-1]["error"] = line["details"].get("error")
        elif kind.startswith("Execution") and kind != "ExecutionStarted":
            status = kind.removeprefix("Execution").upper()
            if states and states[-1]["durationMs"] is None:
                states[-1]["durationMs"] = at - states[-1]["_at"]
    for state in states:
        del state["_at"]
    return {"executionArn": arn, "status": status, "log": "ok", "states": states,
            "startedAt": _iso(_ms(lines[0]["event_timestamp"]))}


def _events(execution: dict[str, Any]) -> list[dict[str, Any]]:
    """The outcome events an execution put: an Emit state it left without an error (no event store exists:
    the log gives which, and when, not the event's id)."""
    return [{"detailType": EMITS[s["state"]], "state": s["state"], "at": s["enteredAt"],
             "executionArn": execution["executionArn"]}
            for s in execution["states"] if s["state"] in EMITS and s["result"] == "ok"]


def _show(target: _Stack, job_id: str) -> dict[str, Any] | None:
    item = target.ddb.get_item(TableName=target.jobs_table, Key={"jobId": {"S": job_id}},
                               ConsistentRead=True).get("Item")
    if item is None:
        return None
    record = _plain(item)
    arns = list(dict.fromkeys(record.get("executions") or ([record["claimedBy"]] if record.get("claimedBy") else [])))
    group = target.outputs.get("RoutingStateMachineLogGroupName")
    executions = [_execution(arn, _log_events(target, group, arn)) for arn in arns]
    decisions = _log_events(target, _rules_log_group(target), job_id)
    decision = next((d for d in reversed(decisions or []) if d.get("jobId") == job_id and "decision" in d), None)
    latest = executions[-1] if executions else None
    detail = _detail(record)
    return {
        "jobId": job_id, "userId": detail.get("userId"), "outcome": OUTCOMES.get(record.get("status", ""), "unknown"),
        "status": record.get("status"), "provider": record.get("provider"), "model": record.get("model"),
        "providerRegion": record.get("providerRegion"), "reason": _reason(record),
        "rule": decision.get("rule") if decision else None,
        "quoteUsd": record.get("quoteUsd"), "priority": record.get("priority"),
        "tableVersion": record.get("tableVersion"),
        "liveState": decision.get("liveState") if decision else None,
        "liveStateAgeSec": decision.get("liveStateAgeSec") if decision else None,
        "queue": record.get("queue"), "messageId": record.get("messageId"),
        "claimedAt": record.get("claimedAt"), "at": _at(record), "attempts": record.get("attempts"),
        "emitError": record.get("emitError"), "shadow": record.get("shadow"),
        "explanation": ({k: v for k, v in decision.items() if not k.startswith("_") and k != "RoutingAttempts"}
                        if decision else "no decision line (logs expired, or the job never reached the rules)"),
        "path": [s["state"] for s in latest["states"]] if latest else [],
        "executions": executions,
        "events": [e for execution in executions for e in _events(execution)],
        "providerOutcome": _provider_outcome(record),
        "replays": [{"executionArn": e["executionArn"], "startedAt": e["startedAt"], "status": e["status"]}
                    for e in executions[1:]],
        "prompt": detail.get("prompt"),
    }


def _provider_outcome(record: dict[str, Any]) -> dict[str, Any] | None:
    """What the provider reported (video.job.completed or failed), kept on the record by the provider events
    function; None: no outcome yet."""
    kept = record.get("providerOutcome")
    return kept if isinstance(kept, dict) else None


@job_app.command("show")
def job_show(
    job_id: Annotated[str, typer.Argument(help="The job's jobId.", metavar="JOBID")],
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """The job's record, decision and explanation, each execution's path with timings, its queue message,
    outcome events and replays."""
    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        view = _show(target, job_id)
    if view is None:
        raise fail(f"no job {job_id} in {target.jobs_table} (check the jobId, or --stack: see jobs list)", EXIT_FAILED)
    if as_json:
        out.print(json.dumps(view), markup=False, highlight=False)
        return
    _print_show(view)


def _print_show(view: dict[str, Any]) -> None:
    def line(label: str, value: Any) -> None:
        shown = "—" if value is None or value == [] else value
        out.print(_printable(f"{label:<13} {shown}"), markup=False, highlight=False)

    line("job", view["jobId"])
    line("user", view["userId"])
    line("outcome", f"{view['outcome']} ({view['status']})")
    route = f"{view['provider']}/{view['model']}" if view["provider"] else None
    if route and view["providerRegion"] not in (None, "default"):  # "default": a provider listing no regions
        route += f" in {view['providerRegion']}"
    line("route", route)
    line("reason", view["reason"])
    line("rule", view["rule"])
    line("quote", f"{view['quoteUsd']} USD, {view['priority']}" if view["quoteUsd"] is not None else None)
    line("table", view["tableVersion"])
    line("live state", f"{view['liveState']} ({view['liveStateAgeSec']} s)" if view["liveState"] else None)
    line("message", f"{view['messageId']} on {view['queue']}" if view["messageId"] else None)
    line("events", ", ".join(f"{e['detailType']} at {e['at']}" for e in view["events"]) or None)
    outcome = view["providerOutcome"]
    line("provider", "no outcome yet" if outcome is None else
         ", ".join(f"{name} {value}" for name, value in outcome.items()))
    line("replays", len(view["replays"]))
    for number, execution in enumerate(view["executions"], 1):
        table = Table(title=_printable(f"execution {number}: {execution['status']} {execution['executionArn']}"),
                      title_justify="left")
        for column in ("state", "entered", "ms", "result"):
            table.add_column(column)
        for state in execution["states"]:
            table.add_row(_printable(state["state"]), state["enteredAt"][11:], str(state["durationMs"] or 0),
                          _printable(state.get("error") or state["result"] or ""))
        if not execution["states"]:
            table.add_row("(no path)", "", "", _printable(execution["log"]))
        out.print(table)


def _since(text: str | None, all_: bool) -> str | None:
    if all_:
        return None
    delta = _duration(text or "24h")
    return (datetime.now(UTC) - delta).isoformat()


def _query(target: _Stack, status: str, since: str | None, reason: str | None,
           page_size: int = 100) -> Iterator[dict[str, Any]]:
    """One status's jobs through ByStatus, newest claim first, a page at a time (never a scan): pages of about
    what is shown, not DynamoDB's 1 MB, so a short list reads little."""
    kwargs: dict[str, Any] = {"TableName": target.jobs_table, "IndexName": BY_STATUS_INDEX, "ScanIndexForward": False,
                              "Limit": page_size,
                              "KeyConditionExpression": "#s = :s" + (" AND claimedAt >= :since" if since else ""),
                              "ExpressionAttributeNames": {"#s": "status"},
                              "ExpressionAttributeValues": {":s": {"S": status}, **(
                                  {":since": {"S": since}} if since else {})}}
    if reason:
        kwargs["FilterExpression"] = "rejectionReason = :r OR failureReason = :r"
        kwargs["ExpressionAttributeValues"][":r"] = {"S": reason}
    while True:
        page = target.ddb.query(**kwargs)
        yield from (_plain(item) for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _row(record: dict[str, Any]) -> dict[str, Any]:
    return {"jobId": record["jobId"], "userId": _detail(record).get("userId"),
            "outcome": OUTCOMES.get(record.get("status", ""), "unknown"), "reason": _reason(record),
            "provider": record.get("provider"), "model": record.get("model"), "at": _at(record),
            "claimedAt": record.get("claimedAt")}


@jobs_app.command("list")
def jobs_list(
    user: Annotated[str | None, typer.Option(help="Only this userId's jobs.", metavar="U")] = None,
    outcome: Annotated[str | None, typer.Option(help="routed, rejected, failed or in_progress.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this rejection or failure reason code.",
                                               metavar="CODE")] = None,
    since: Annotated[str | None, typer.Option(help="Claimed within this long, e.g. 1h (default 24h).")] = None,
    limit: Annotated[int, typer.Option(help="At most N jobs.", min=1, metavar="N")] = 50,
    all_: Annotated[bool, typer.Option("--all", help="No --since bound: every job the index holds.")] = False,
    as_json: JsonOpt = False,
    stack: StackOpt = None, profile: ProfileOpt = None, region: RegionOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Jobs newest first, through the Jobs table's ByStatus index (a query per outcome, paged; never a scan)."""
    import heapq

    wanted = {v: k for k, v in OUTCOMES.items()}
    if outcome is not None and outcome not in wanted:
        raise cli.bad_usage(f"{outcome!r}: use routed, rejected, failed or in_progress", "--outcome")
    if all_ and since:
        raise cli.bad_usage("--all and --since together: choose one")
    bound = _since(since, all_)
    statuses = [wanted[outcome]] if outcome else list(OUTCOMES)
    rows: list[dict[str, Any]] = []
    with _aws_errors():
        target = _stack(stack, profile, region, endpoint_url)
        streams = [_query(target, status, bound, reason, min(limit, 500)) for status in statuses]
        merged = heapq.merge(*streams, key=lambda r: r.get("claimedAt") or "", reverse=True)
        for record in merged:
            row = _row(record)
            if user is not None and row["userId"] != user:
                continue
            rows.append(row)
            if len(rows) >= limit:
                break
    if as_json:
        for row in rows:
            out.print(json.dumps(row), markup=False, highlight=False)
        return
    if not rows:
        out.print("no jobs" + ("" if all_ else f" claimed since {bound}"), highlight=False)
        return
    table = Table()
    for column in ("jobId", "user", "outcome", "reason", "provider/model", "at"):
        table.add_column(column)
    for row in rows:
        route = f"{row['provider']}/{row['model']}" if row["provider"] else ""
        table.add_row(*(_printable(v or "") for v in (row["jobId"], row["userId"], row["outcome"], row["reason"],
                                                      route, row["at"])))
    out.print(table)
