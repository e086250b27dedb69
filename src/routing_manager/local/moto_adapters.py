"""Every adapter the local stack puts over moto (pinned 5.2.5), in one place.

GAPS make moto behave as AWS documents; SPEED_UPS only make it faster (ROUTING_MANAGER_LOCAL_SPEEDUPS=0
leaves them out). Every patch is a mock.patch.object in an ExitStack: `adapted()` applies them for a
block, `install()` until `uninstall()`. tests/unit/test_moto_gaps.py shows each gap with its adapter
and, as a strict xfail, without it: when a moto upgrade closes a gap, that test says the adapter can go.
docs/LOCAL_STACK.md has the same list with the reasons.

| moto 5.2.5                                                   | adapter                          |
|--------------------------------------------------------------|----------------------------------|
| CloudFormation ignores DefinitionSubstitutions               | definition_substitutions_as_join |
| CloudFormation creates state machines in a non-executing     | route_cfn_state_machines         |
|   backend                                                    |                                  |
| EventBridge accepts a Step Functions target, never starts it | deliver_events_to_step_functions |
|   (and matches schedule rules to every event)                |                                  |
| Lambda without Docker returns a canned payload               | invoke_lambda_functions          |
| EventBridge never invokes a Lambda target                     | deliver_events_to_step_functions |
| set_alarm_state sends no "CloudWatch Alarm State Change" event | announce_alarm_state_changes     |
| CloudFormation skips AWS::CloudWatch::Alarm                   | create_cfn_alarms                |
| CloudWatch never evaluates an alarm on its metric's data      | evaluate_metric_alarms           |
| Lambda's EMF log lines never become metrics                   | lambda_runtime.LogSink           |
| Retry waits are real sleeps (up to minutes per test)         | compress_retry_waits             |
| The interpreter builds a new boto3 client for every task call | reuse_interpreter_clients        |
| The interpreter re-parses the definition (ANTLR) and rebuilds | parse_each_definition_once       |
|   the program for every execution: half of its CPU           |                                  |
| Service models load on first use; concurrent first uses each  | warm_service_models              |
|   load the same large JSON                                   |                                  |
| Every JSONPath evaluation (the interpreter's, EventBridge's    | parse_each_json_path_once        |
|   target input) rebuilds jsonpath_ng's LR parser             |                                  |
| SendMessage costs time in proportion to the queue's depth     | count_queue_messages_in_one_pass |
| Every UpdateItem parses its UpdateExpression twice            | parse_each_update_expression_once |
| CloudFormation reads a JSON TemplateBody with PyYAML's pure  | parse_json_templates_as_json     |
|   Python loader (a fifth of every deploy)                    |                                  |
| Every execution evaluates at once: a burst starves them all   | bound_running_executions         |
| DynamoDB conditional writes are not atomic across threads:    | serialize_dynamodb_requests      |
|   two concurrent claims can both succeed (found by the        |                                  |
|   duplicate storm)                                            |                                  |
| CloudFormation skips AWS::DynamoDB::GlobalTable; a replica   | share_global_table_replicas      |
|   region has no table (MRSC: one strongly consistent copy)    |                                  |
| No EventBridge global endpoints; CloudFormation skips them    | create_cfn_global_endpoints      |
| Responses go through a slow generic serializer (40 % of a run | execution_statuses,              |
|   spent listing and describing executions); list tokens go    |   read_execution                 |
|   stale while executions end                                  |                                  |

AWS limits moto does not enforce (routing_manager.aws_limits has the numbers and the pages):

| moto 5.2.5                                                    | adapter                          |
|---------------------------------------------------------------|----------------------------------|
| Every execution runs as STANDARD                              | run_express_machines_as_express  |
| No 5-minute limit on EXPRESS executions                       | enforce_express_time_limit       |
| Task input after Parameters unmeasured; States.ALL catches     | enforce_state_payload_quota      |
|   States.DataLimitExceeded                                     |                                  |
| StartExecution from a rule takes any input size               | deliver_events_to_step_functions |
| PutEvents takes entries of any size                           | enforce_event_entry_size         |
| SQS queues default to 1 MiB, counted in characters             | enforce_sqs_message_size         |
| Deeply nested input hits Python's recursion limit             | allow_deep_json                  |
| An execution never runs twice (AWS: at-least-once)             | restart_execution                |
| A FailedEntry's cause is PutEvents' response (a dict), not text | failure_causes_as_text           |
| Executions never write their history to the machine's log group | log_executions_to_cloudwatch     |
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from unittest import mock

from routing_manager.local import lambda_runtime

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


# --- DefinitionSubstitutions ------------------------------------------------------------

def definition_substitutions_as_join(template: dict[str, Any]) -> dict[str, Any]:
    """Apply each state machine's DefinitionSubstitutions as CloudFormation would.

    AWS substitutes `${Key}` in the definition at deploy time; moto's CloudFormation
    ignores the property and would create the machine with the placeholders in it.
    """
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        props = resource["Properties"]
        substitutions = props.pop("DefinitionSubstitutions", None)
        if not substitutions:
            continue
        definition = props.pop("DefinitionString", None)
        if definition is None:
            definition = json.dumps(props.pop("Definition"))
        if isinstance(definition, dict) and "Fn::Join" in definition:
            separator, parts = definition["Fn::Join"]  # how SAM inlines Definition
            if all(isinstance(part, str) for part in parts):
                definition = separator.join(parts)
        if not isinstance(definition, str):
            raise ValueError("DefinitionString must be literal text for the local stack")
        # Not Fn::Sub: moto implements it with string.Template once per key, and every pass turns
        # "$$" into "$" ("$$.Execution.Id" would arrive as "$.Execution.Id"). A join of the
        # literal text and the substituted values is what AWS produces, with no escaping rules.
        pieces: list[Any] = []
        for index, piece in enumerate(_PLACEHOLDER.split(definition)):
            if index % 2 == 0:
                pieces.append(piece)
            elif piece in substitutions:
                pieces.append(substitutions[piece])
            else:
                raise ValueError(f"${{{piece}}} in the definition has no DefinitionSubstitutions entry")
        props["DefinitionString"] = {"Fn::Join": ["", pieces]}
    return template


# --- CloudFormation state machines -> the executing backend ----------------------------

def route_cfn_state_machines(patches: contextlib.ExitStack) -> None:
    """Create CloudFormation's state machines in the parser backend, the one that executes.

    moto's StateMachine.create_from_cloudformation_json writes to `stepfunctions_backends`,
    while the API (with execute_state_machine on) reads `stepfunctions_parser_backends`.
    """
    from moto.stepfunctions import models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    def create(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
               region_name: str, **kwargs: Any) -> Any:
        props = cloudformation_json["Properties"]
        name = props.get("StateMachineName") or resource_name
        definition = props.get("DefinitionString") or json.dumps(props.get("Definition", {}))
        tags = [{"key": t["Key"], "value": t["Value"]} for t in props.get("Tags", [])]
        backend = stepfunctions_parser_backends[account_id][region_name]
        return backend.create_state_machine(
            name=name, definition=definition, roleArn=props["RoleArn"], tags=tags,
            sm_type=props.get("StateMachineType", "STANDARD"),
            loggingConfiguration=props.get("LoggingConfiguration"),
            tracingConfiguration=props.get("TracingConfiguration"),
        )

    def delete(cls: Any, resource_name: str, cloudformation_json: dict[str, Any], account_id: str,
               region_name: str) -> None:
        backend = stepfunctions_parser_backends[account_id][region_name]
        for machine in list(backend.state_machines):
            if machine.name == resource_name or machine.arn == resource_name:
                backend.delete_state_machine(machine.arn)

    for name, method in (("create_from_cloudformation_json", create), ("delete_from_cloudformation_json", delete)):
        patches.enter_context(mock.patch.object(models.StateMachine, name, classmethod(method)))


# --- EventBridge -> Step Functions ------------------------------------------------------

def deliver_events_to_step_functions(patches: contextlib.ExitStack) -> None:
    """Start an execution for each matching rule target that is a state machine.

    As AWS does: the input is the whole event envelope, the execution name is unique,
    and when StartExecution fails the event goes to the target's dead-letter queue.
    """
    from moto.events import models
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.utilities.arns import parse_arn

    from routing_manager.aws_limits import STATE_PAYLOAD_BYTES

    original = models.Rule.send_to_targets

    def send_to_targets(self: Any, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if getattr(self, "scheduled_expression", None):
            return  # a schedule rule never matches events on AWS; moto would match it to all
        if not self.event_pattern.matches_event(original_event):
            return  # matched once here: moto's own delivery below would match it again
        state_machines = [t for t in self.targets if parse_arn(t["Arn"]).service == "states"]
        functions = [t for t in self.targets if t["Arn"] in LOCAL_FUNCTIONS]
        others = copy.copy(self)  # moto raises NotImplementedError on targets it does not deliver
        others.targets = [t for t in self.targets if parse_arn(t["Arn"]).service in ("logs", "events", "sqs")]
        if others.targets:
            others.event_pattern = _MATCHES_ALL
            original(others, original_event, transform_input)  # type: ignore[arg-type]
        if not (state_machines or functions):
            return
        for target in functions:  # an asynchronous invoke on AWS; here in the publisher's thread
            _invoke_async(LOCAL_FUNCTIONS[target["Arn"]], _aws_envelope(original_event))
        for target in state_machines:
            arn = parse_arn(target["Arn"])
            envelope = _aws_envelope(original_event)
            backend = stepfunctions_parser_backends[arn.account][arn.region]
            try:
                execution_input = json.dumps(envelope)
                if _utf8_size(execution_input) > STATE_PAYLOAD_BYTES:  # StartExecution refuses it on AWS
                    raise ValueError(f"States.DataLimitExceeded: the execution input is over {STATE_PAYLOAD_BYTES}"
                                     " bytes")
                backend.start_execution(target["Arn"], name=f"{envelope['id'][:36]}-{uuid.uuid4().hex[:8]}",
                                        execution_input=execution_input)
            except Exception as exc:  # EventBridge would retry, then dead-letter the event
                UNDELIVERED.append(Undelivered(target["Arn"], envelope, str(exc), _dead_letter(self, target, envelope,
                                                                                              exc)))

    patches.enter_context(mock.patch.object(models.Rule, "send_to_targets", send_to_targets))


class _MatchesAll:
    """The pattern of a rule already matched: moto's delivery need not match it again."""

    @staticmethod
    def matches_event(event: Any) -> bool:
        return True


_MATCHES_ALL = _MatchesAll()


def _aws_envelope(event: dict[str, Any]) -> dict[str, Any]:
    envelope = dict(event)
    if isinstance(envelope.get("time"), (int, float)):
        envelope["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(envelope["time"])))
    return envelope


@dataclass
class Undelivered:
    """An event EventBridge could not deliver to a state machine: dead-lettered, or lost (what AWS
    counts as InvocationsFailedToBeSentToDlq)."""

    state_machine_arn: str
    event: dict[str, Any]
    error: str
    dead_lettered: bool


UNDELIVERED: list[Undelivered] = []


def _dead_letter(rule: Any, target: dict[str, Any], envelope: dict[str, Any], exc: Exception) -> bool:
    dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
    if not dlq:
        return False
    from moto.sqs.models import sqs_backends

    queue = dlq.split(":")[-1]
    try:
        sqs_backends[rule.account_id][rule.region_name].send_message(
            queue_name=queue, message_body=json.dumps(envelope),
            message_attributes={"ERROR_MESSAGE": {"data_type": "String", "string_value": str(exc)[:256]},
                                "RULE_ARN": {"data_type": "String", "string_value": rule.arn}},
        )
    except Exception:  # a deleted queue, or an event over the queue's message size
        return False
    return True


# --- Lambda: functions run as processes (routing_manager.local.lambda_runtime) ----------

class LocalFunction(Protocol):
    """What the invoke adapter runs: lambda_runtime.Function (the stack's), or a test's double."""

    faults: list[str | BaseException]
    invocations: int
    lock: threading.Lock

    @property
    def name(self) -> str: ...

    def invoke_event(self, event: Any) -> lambda_runtime.Result: ...


# Deployed functions by ARN: what moto's Invoke and EventBridge's Lambda targets run.
LOCAL_FUNCTIONS: dict[str, LocalFunction] = {}
# Lambda retries a failed asynchronous invoke twice (Lambda developer guide, "Asynchronous invocation").
ASYNC_ATTEMPTS = 3


@dataclass
class AsyncFailure:
    """An asynchronous invoke (an EventBridge target) that failed on every attempt Lambda makes."""

    function: str
    event: dict[str, Any]
    error: str


ASYNC_FAILURES: list[AsyncFailure] = []


def _run(function: LocalFunction, event: Any) -> lambda_runtime.Result:
    """One invoke, after the first injected fault, if any (a string is raised by the caller as a service
    error; an exception answers as the function's unhandled error of that type)."""
    with function.lock:
        function.invocations += 1
        fault = function.faults.pop(0) if function.faults else None
    if isinstance(fault, str):
        raise _ServiceFault(fault)
    if fault is not None:
        return lambda_runtime.Result(json.dumps({"errorType": type(fault).__name__, "errorMessage": str(fault)})
                                     .encode(), "Unhandled")
    return function.invoke_event(event)


class _ServiceFault(Exception):
    """An injected Lambda service error (the Invoke API's own, such as TooManyRequestsException)."""


def _invoke_async(function: LocalFunction, event: dict[str, Any]) -> None:
    error = ""
    for _ in range(ASYNC_ATTEMPTS):
        try:
            result = _run(function, event)
        except _ServiceFault as fault:
            error = str(fault)
            continue
        if result.function_error is None:
            return
        answer = result.json()
        error = f"{answer.get('errorType')}: {answer.get('errorMessage')}" if isinstance(answer, dict) else str(answer)
    ASYNC_FAILURES.append(AsyncFailure(function.name, event, error))


def invoke_lambda_functions(patches: contextlib.ExitStack) -> None:
    """Run a deployed function's real code when moto's Lambda is invoked.

    The answer is what Lambda's Invoke returns: the payload, and FunctionError Unhandled with
    errorType/errorMessage when the function failed, so Step Functions sees AWS's error names.
    """
    from moto.awslambda import models
    from moto.core.exceptions import JsonRESTError

    original = models.LambdaFunction.invoke

    def invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> str | bytes:
        function = LOCAL_FUNCTIONS.get(self.function_arn)
        if function is None:
            return original(self, body, request_headers, response_headers)
        try:
            result = _run(function, json.loads(body) if body else {})
        except _ServiceFault as fault:
            raise JsonRESTError(str(fault), f"injected fault: {fault}") from None
        if result.function_error:
            response_headers["x-amz-function-error"] = result.function_error
        return result.payload

    patches.enter_context(mock.patch.object(models.LambdaFunction, "invoke", invoke))


# --- CloudWatch alarms -> EventBridge ---------------------------------------------------

def _metric_queries(metrics: list[dict[str, Any]]) -> list[Any]:
    """A metric-math alarm's `Metrics`, as moto's PutMetricAlarm builds them from the API's."""
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    queries = []
    for query in metrics:
        stat = query.get("MetricStat")
        metric_stat = MetricStat(
            metric=Metric(metric_name=stat["Metric"]["MetricName"], namespace=stat["Metric"]["Namespace"],
                          dimensions=[Dimension(name=d["Name"], value=d["Value"])
                                      for d in stat["Metric"].get("Dimensions", [])]),
            period=stat["Period"], stat=stat["Stat"], unit=stat.get("Unit")) if stat else None
        fields: dict[str, Any] = {"label": query.get("Label"), "period": query.get("Period"),
                                  "return_data": query.get("ReturnData")}  # absent as in moto's own parse
        queries.append(MetricDataQuery(query_id=query["Id"], expression=query.get("Expression"),
                                       metric_stat=metric_stat, **fields))
    return queries


class _CfnAlarm:
    """AWS::CloudWatch::Alarm for moto's CloudFormation: the alarm put in moto's CloudWatch."""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        from moto.cloudwatch.models import cloudwatch_backends

        props = cloudformation_json["Properties"]
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            metric_data_queries=_metric_queries(props.get("Metrics") or []),
            datapoints_to_alarm=int(props["DatapointsToAlarm"]) if props.get("DatapointsToAlarm") else None,
            name=props.get("AlarmName") or resource_name, namespace=props.get("Namespace"),
            metric_name=props.get("MetricName"), comparison_operator=props["ComparisonOperator"],
            evaluation_periods=int(props["EvaluationPeriods"]), period=int(props.get("Period", 60)),
            threshold=float(props["Threshold"]), statistic=props.get("Statistic"),
            description=props.get("AlarmDescription", ""), dimensions=props.get("Dimensions", []),
            alarm_actions=props.get("AlarmActions", []), ok_actions=props.get("OKActions", []),
            treat_missing_data=props.get("TreatMissingData"))
        setattr(alarm, "physical_resource_id", alarm.name)  # what Ref gives on AWS  # noqa: B010
        setattr(alarm, "is_created", lambda: True)  # noqa: B010
        return alarm

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        name = cloudformation_json.get("Properties", {}).get("AlarmName") or resource_name
        cloudwatch_backends[account_id][region_name].delete_alarms([name])

    @staticmethod
    def has_cfn_attr(attr: str) -> bool:
        return attr == "Arn"


def create_cfn_alarms(patches: contextlib.ExitStack) -> None:
    """The stack's alarms exist (the queue-age alarms feed provider saturation); moto's CloudFormation
    skipped them with a warning."""
    from moto.cloudformation import parsing

    original = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        return _CfnAlarm if resource_type == "AWS::CloudWatch::Alarm" else original(resource_type)

    patches.enter_context(mock.patch.object(parsing, "resource_class_from_type", resource_class_from_type))


def announce_alarm_state_changes(patches: contextlib.ExitStack) -> None:
    """A changed alarm state sends "CloudWatch Alarm State Change" (source aws.cloudwatch) to the default
    bus, as AWS does (CloudWatch user guide, "Alarm events and EventBridge"). moto evaluates no metric, so
    `set_alarm_state` is how the local stack (and an operator testing on AWS) moves an alarm."""
    from moto.cloudwatch import models
    from moto.events.models import events_backends

    original = models.CloudWatchBackend.set_alarm_state

    def set_alarm_state(self: Any, alarm_name: str, reason: str, reason_data: str, state_value: str) -> None:
        alarm = self.alarms.get(alarm_name)
        previous = alarm.state_value if alarm else None
        original(self, alarm_name, reason, reason_data, state_value)
        if alarm is None or previous == state_value:
            return
        detail = {"alarmName": alarm_name, "state": {"value": state_value, "reason": reason},
                  "previousState": {"value": previous}}
        events_backends[self.account_id][self.region_name].put_events([{
            "Source": "aws.cloudwatch", "DetailType": "CloudWatch Alarm State Change", "EventBusName": "default",
            "Detail": json.dumps(detail), "Resources": [alarm.alarm_arn]}])

    patches.enter_context(mock.patch.object(models.CloudWatchBackend, "set_alarm_state", set_alarm_state))


# --- CloudWatch evaluates metric alarms ------------------------------------------------

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


_STATISTIC: dict[str, Callable[[list[float]], float]] = {
    "Sum": sum, "Maximum": max, "Minimum": min, "SampleCount": len, "Average": lambda v: sum(v) / len(v),
}


def _periods(backend: Any, namespace: str, name: str, dimensions: Any, statistic: str, period: int, periods: int,
             now: Any) -> dict[int, float]:
    """The statistic of a metric per period, by how many periods ago it ends (0: the latest)."""
    from datetime import UTC

    wanted = {(d.name, d.value) for d in dimensions or []}
    buckets: dict[int, list[float]] = {}
    for datum in list(backend.metric_data):  # exact dimensions, as CloudWatch matches them (moto: a subset)
        value = getattr(datum, "value", None)
        if (datum.namespace, datum.name) != (namespace, name) or value is None \
                or {(d.name, d.value) for d in datum.dimensions} != wanted:
            continue
        stamp = datum.timestamp if datum.timestamp.tzinfo else datum.timestamp.replace(tzinfo=UTC)
        age = (now - stamp).total_seconds()
        if 0 <= age < period * periods:
            buckets.setdefault(int(age // period), []).append(float(value))
    if statistic not in _STATISTIC:
        return {}
    return {ago: _STATISTIC[statistic](values) for ago, values in buckets.items()}


def _math(expression: str, series: dict[str, dict[int, float]], ago: int) -> float | None:
    """One period of a metric-math expression: ids, numbers, + - * /, comparisons, FILL(id, n) and
    IF(c, a, b), enough for this template's alarms (CloudWatch user guide, "Metric math syntax and
    functions"). A missing value makes arithmetic on it missing, as in CloudWatch."""
    import ast
    import operator

    arithmetic: dict[type, Callable[[float, float], float]] = {
        ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
    comparisons: dict[type, Callable[[float, float], bool]] = {
        ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le}

    def value(node: ast.AST) -> float | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            return series.get(node.id, {}).get(ago)
        if isinstance(node, ast.BinOp) and type(node.op) in arithmetic:
            left, right = value(node.left), value(node.right)
            if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
                return None
            return arithmetic[type(node.op)](left, right)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in comparisons:
            left, right = value(node.left), value(node.comparators[0])
            return None if left is None or right is None else float(comparisons[type(node.ops[0])](left, right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "FILL":
            filled = value(node.args[0])
            return value(node.args[1]) if filled is None else filled
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "IF":
            condition = value(node.args[0])
            return None if condition is None else value(node.args[1] if condition else node.args[2])
        raise ValueError(f"metric math the local stack does not evaluate: {ast.unparse(node)}")

    return value(ast.parse(expression, mode="eval").body)


def _alarm_values(backend: Any, alarm: Any, now: Any) -> list[float]:
    """The alarm's value in each of its last EvaluationPeriods periods that has one."""
    periods = int(alarm.evaluation_periods)
    if alarm.metric_name and alarm.statistic:
        return list(_periods(backend, alarm.namespace, alarm.metric_name, alarm.dimensions, alarm.statistic,
                             int(alarm.period), periods, now).values())
    queries = alarm.metric_data_queries or []
    series: dict[str, dict[int, float]] = {}
    for query in queries:
        if query.metric_stat is not None:
            stat = query.metric_stat
            series[query.id] = _periods(backend, stat.metric.namespace, stat.metric.metric_name,
                                        stat.metric.dimensions, stat.stat, int(stat.period), periods, now)
    returned = [q for q in queries if q.expression and str(q.return_data).lower() in ("true", "none")]
    if len(returned) != 1 or not any(series.values()):
        return []
    try:
        for query in queries:  # expressions in order: each may use the ones before it
            if query.expression:
                series[query.id] = {ago: v for ago in range(periods)
                                    if (v := _math(query.expression, series, ago)) is not None}
    except (SyntaxError, ValueError, IndexError):
        return []  # beyond what the local stack evaluates: the alarm keeps its state
    return list(series[returned[0].id].values())


def evaluate_metric_alarms(account: str, region: str, now: Any = None) -> list[str]:
    """One evaluation of every metric alarm on the data moto holds, as CloudWatch evaluates each
    minute (CloudWatch user guide, "Evaluating an alarm"): the statistic, or the metric-math
    expression, per Period over the last EvaluationPeriods, ALARM when DatapointsToAlarm of them
    breach, OK otherwise. moto never evaluates.

    Unlike AWS, an alarm whose metrics have no data in its range is left as it is (AWS would apply
    TreatMissingData): `set-alarm-state` drills on alarms fed by nothing local (queue age) keep their
    state. Returns the names of the alarms that changed."""
    from datetime import UTC, datetime

    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[account][region]
    now = now or datetime.now(UTC)
    changed = []
    for alarm in list(backend.alarms.values()):
        compare = _COMPARE.get(alarm.comparison_operator)
        if compare is None:
            continue
        values = _alarm_values(backend, alarm, now)
        if not values:
            continue
        periods = int(alarm.evaluation_periods)
        breaching = sum(compare(value, float(alarm.threshold)) for value in values)
        state = "ALARM" if breaching >= int(alarm.datapoints_to_alarm or periods) else "OK"
        if state != alarm.state_value:
            backend.set_alarm_state(alarm.name, f"local evaluation: {breaching} of {len(values)} datapoints breach "
                                                f"{alarm.comparison_operator} {alarm.threshold}", "{}", state)
            changed.append(alarm.name)
    return changed


class AlarmEvaluator:
    """Evaluates the alarms every `interval` seconds in a thread of its own, until stopped."""

    def __init__(self, account: str, region: str, interval: float = 1.0) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(account, region, interval),
                                        name="alarm-evaluator", daemon=True)
        self._thread.start()

    def _run(self, account: str, region: str, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):  # a stack torn down under it: the next round sees the rest
                evaluate_metric_alarms(account, region)

    def stop(self) -> None:
        self._stop.set()


# --- Retry waits ------------------------------------------------------------------------

class _ScaledTime:
    """Sleeps `scale` of each wait and remembers, per thread, the time it skipped: an execution's
    clock as AWS would read it is its real elapsed time plus what its thread skipped."""

    scale = 1.0

    def __init__(self) -> None:
        self.skipped: dict[int, float] = {}

    def sleep(self, seconds: float) -> None:
        thread = threading.get_ident()  # counted first: a wait past the time limit times out during it
        self.skipped[thread] = self.skipped.get(thread, 0.0) + seconds * (1 - self.scale)
        time.sleep(seconds * self.scale)


_scaled_time = _ScaledTime()


def compress_retry_waits(patches: contextlib.ExitStack, scale: float = 0.01) -> None:
    """Keep every Retry's attempts and order but wait `scale` times as long (1.0 = as AWS)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    patches.enter_context(mock.patch.object(_scaled_time, "scale", scale))
    patches.enter_context(mock.patch.object(retrier_decl, "time", _scaled_time))


# --- interpreter clients ----------------------------------------------------------------

_CLIENT_USERS = [
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    *(f"moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_{name}"
      for name in ("unsupported", "glue", "events", "ecs", "sqs", "sfn", "dynamodb", "batch", "sns", "aws_sdk")),
]


def reuse_interpreter_clients(patches: contextlib.ExitStack) -> None:
    """Share one client per (region, service, transport) instead of one per task call.

    Creating a boto3 client costs tens of milliseconds of CPU; an execution makes about ten
    calls, and under the GIL that capped the local stack at a few jobs per second.
    Clients are thread-safe, and these carry no per-call state (dummy credentials)."""
    import importlib

    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    clients: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def shared_client(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, botocore_stubber.enabled, moto_server_port())
        client = clients.get(key)
        if client is None:
            with lock:
                client = clients.get(key) or original(region, service, state_credentials)
                clients[key] = client
        return client

    for name in _CLIENT_USERS:
        patches.enter_context(mock.patch.object(importlib.import_module(name), "boto_client_for", shared_client))


# --- definition parsing -----------------------------------------------------------------

def parse_each_definition_once(patches: contextlib.ExitStack) -> None:
    """Parse each definition once and evaluate every execution of it with the same program.

    Parsing (ANTLR) and building the program from the tree were half of an execution's CPU.
    The program's components keep no per-execution state: retry counters and every value
    live in the execution's Environment (its heap and stack). The one lazy attribute, each
    component's heap key, is fixed before the program is shared, so threads agree on it."""
    import functools

    from moto.stepfunctions.parser.asl.parse import asl_parser

    original = asl_parser.AmazonStateLanguageParser.parse

    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent

    @functools.lru_cache(maxsize=64)
    def parse(definition: str) -> tuple[Any, Any]:
        program, tree = original(definition)
        _fix_heap_keys(program, EvalComponent, set())
        return program, tree

    patches.enter_context(mock.patch.object(asl_parser.AmazonStateLanguageParser, "parse", staticmethod(parse)))


def _fix_heap_keys(value: Any, component_type: type, seen: set[int]) -> None:
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, component_type):
        _ = value.heap_key  # type: ignore[attr-defined]
    if isinstance(value, (list, tuple, set)):
        children: Any = value
    elif isinstance(value, dict):
        children = value.values()
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("moto.stepfunctions"):
        children = vars(value).values()
    else:
        return
    for child in children:
        _fix_heap_keys(child, component_type, seen)


# --- service models ---------------------------------------------------------------------

WORKFLOW_SERVICES = ("dynamodb", "sqs", "events", "lambda", "stepfunctions", "cloudwatch")


def warm_service_models(services: tuple[str, ...] = WORKFLOW_SERVICES) -> None:
    """Load the models the workflow's calls need once, before executions start in parallel:
    moto caches them, but threads that miss the cache together each parse the same JSON."""
    from moto.core.utils import get_service_model

    for service in services:
        get_service_model(service)


# --- JSONPath parsing -------------------------------------------------------------------

def parse_each_json_path_once(patches: contextlib.ExitStack) -> None:
    """Cache parsed JSONPath expressions: jsonpath_ng builds a new ply LR parser for every
    parse; the interpreter parses each path each time it reads it, and EventBridge parses
    eight paths for every event it delivers to a queue (two thirds of a PutEvents). The
    parsed expressions are immutable (`find` does not change them), so sharing them is safe."""
    import functools

    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.utils import json_path

    # moto.events imports jsonpath_ng.ext's inside the function, from the module, on every call.
    for module in (json_path, jsonpath_ng.ext):
        parse = module.parse
        patches.enter_context(mock.patch.object(module, "parse", functools.lru_cache(maxsize=4096)(parse)))


# --- SQS queue depth --------------------------------------------------------------------

def count_queue_messages_in_one_pass(patches: contextlib.ExitStack) -> None:
    """Count a queue's visible, delayed and in-flight messages reading the clock once.

    moto reads the clock twice per message for each count, and computes all three counts on
    every SendMessage (it looks up one queue attribute through the property that builds
    them all): each send cost time in proportion to the queue's depth, and a 1,000-job run
    slowed down as its queues filled."""
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    patches.enter_context(mock.patch.object(Queue, "messages", property(messages)))
    patches.enter_context(mock.patch.object(Queue, "approximate_number_of_messages_delayed", property(delayed)))
    patches.enter_context(mock.patch.object(Queue, "approximate_number_of_messages_not_visible", property(not_visible)))


# --- DynamoDB write atomicity -----------------------------------------------------------

def serialize_dynamodb_requests(patches: contextlib.ExitStack) -> None:
    """Make each DynamoDB request one atomic step, as DynamoDB is for an item.

    moto checks a ConditionExpression and then writes, with nothing in between stopping
    another thread: under concurrent executions two idempotency claims on the same jobId
    both succeeded. Its responses also serialise items after the write returns, so the lock
    covers the whole request, reads included. One lock is coarser than DynamoDB's per-item
    ordering, and enough for a local stack."""
    from moto.dynamodb.responses import DynamoHandler

    lock = threading.RLock()
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with lock:
            return original(self)

    patches.enter_context(mock.patch.object(DynamoHandler, "call_action", call_action))


# --- DynamoDB global tables (MRSC) ------------------------------------------------------

class _CfnGlobalTable:
    """AWS::DynamoDB::GlobalTable for moto's CloudFormation: the table, created in the stack's region, and
    the same table object in every replica region."""

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        props = cloudformation_json["Properties"]
        name = props.get("TableName") or resource_name
        table = dynamodb_backends[account_id][region_name].create_table(
            name=name, schema=props["KeySchema"], attr=props["AttributeDefinitions"],
            global_indexes=props.get("GlobalSecondaryIndexes", []), indexes=props.get("LocalSecondaryIndexes", []),
            throughput=None, streams=props.get("StreamSpecification"), billing_mode="PAY_PER_REQUEST",
            sse_specification=props.get("SSESpecification"), tags=[], deletion_protection_enabled=False,
            warm_throughput=None)
        for replica in props.get("Replicas", []):
            if replica["Region"] != region_name:
                dynamodb_backends[account_id][replica["Region"]].tables[name] = table
        return table

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        from moto.dynamodb.models import dynamodb_backends

        props = cloudformation_json.get("Properties", {})
        name = props.get("TableName") or resource_name
        for region in {region_name, *(r["Region"] for r in props.get("Replicas", []))}:
            dynamodb_backends[account_id][region].tables.pop(name, None)

    @staticmethod
    def has_cfn_attr(attr: str) -> bool:
        return attr in ("Arn", "StreamArn")


def share_global_table_replicas(patches: contextlib.ExitStack) -> None:
    """A global table's replica region reads and writes the one table its stack created, strongly
    consistently: what an MRSC global table promises (a conditional write is checked against the latest
    version of the item, whichever region writes; DynamoDB developer guide, "How global tables work").
    moto's CloudFormation skips AWS::DynamoDB::GlobalTable (with a warning), and moto has no replication:
    the second region's router would find no table. One shared object models MRSC, not MREC, whose
    replicas diverge for the replication lag (docs/RELIABILITY.md, "The router in two regions")."""
    from moto.cloudformation import parsing

    original = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        return _CfnGlobalTable if resource_type == "AWS::DynamoDB::GlobalTable" else original(resource_type)

    patches.enter_context(mock.patch.object(parsing, "resource_class_from_type", resource_class_from_type))


class _CfnGlobalEndpoint:
    """AWS::Events::Endpoint for moto's CloudFormation: its id and URL, as Ref and GetAtt give them. No
    routing: a test delivers each submission to both regions' buses itself, as replication does."""

    def __init__(self, name: str, region: str, account_id: str) -> None:
        self.name = name
        self.physical_resource_id = name  # Ref gives the endpoint's name on AWS
        self.endpoint_id = f"{uuid.uuid4().hex[:8]}.{uuid.uuid4().hex[:4]}"
        self.endpoint_url = f"https://{self.endpoint_id}.endpoint.events.amazonaws.com"
        self.arn = f"arn:aws:events:{region}:{account_id}:endpoint/{name}"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str, **kwargs: Any) -> Any:
        return cls(cloudformation_json["Properties"].get("Name") or resource_name, region_name, account_id)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],
                                        account_id: str, region_name: str) -> None:
        return None

    @staticmethod
    def has_cfn_attr(attr: str) -> bool:
        return attr in ("Arn", "EndpointId", "EndpointUrl")

    def get_cfn_attribute(self, attr: str) -> str:
        return {"Arn": self.arn, "EndpointId": self.endpoint_id, "EndpointUrl": self.endpoint_url}[attr]

    @staticmethod
    def is_created() -> bool:
        return True


def create_cfn_global_endpoints(patches: contextlib.ExitStack) -> None:
    """The two-region stack deploys: moto has no EventBridge global endpoints, and its CloudFormation
    refuses a stack whose Outputs read an attribute of a resource type it skips (GlobalEndpointId)."""
    from moto.cloudformation import parsing

    original = parsing.resource_class_from_type

    def resource_class_from_type(resource_type: str) -> Any:
        return _CfnGlobalEndpoint if resource_type == "AWS::Events::Endpoint" else original(resource_type)

    patches.enter_context(mock.patch.object(parsing, "resource_class_from_type", resource_class_from_type))


# --- reading executions -----------------------------------------------------------------

def _parser_backend(arn: str) -> Any:
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.utilities.arns import parse_arn

    parsed = parse_arn(arn)
    return stepfunctions_parser_backends[parsed.account][parsed.region]


def execution_statuses(state_machine_arn: str) -> dict[str, str]:
    """Every execution of a state machine and its status, read in process.

    Through the API, moto serialises each response with its generic serializer, and a
    waiter listing thousands of executions (or fetching every history) spent about 40 %
    of a local run's CPU there; its list pagination token also goes stale when an
    execution ends between pages."""
    backend = _parser_backend(state_machine_arn)
    executions = backend.describe_state_machine(state_machine_arn).executions
    return {e.execution_arn: e.status for e in list(executions)}


def read_execution(execution_arn: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """DescribeExecution and GetExecutionHistory of one execution, as the API would return them."""
    execution = _parser_backend(execution_arn).describe_execution(execution_arn)
    return dict(execution.to_describe_output()), list(execution.to_history_output()["events"])


# --- AWS limits moto does not enforce (routing_manager.aws_limits names the pages) --------

def _utf8_size(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return len(text.encode("utf-8", errors="surrogatepass"))


def enforce_state_payload_quota(patches: contextlib.ExitStack) -> None:
    """A Task's input after Parameters over 256 KiB fails with States.DataLimitExceeded (moto checks a
    state's output, not a task's parameters), and, as on AWS, no Retry or Catch matches that error:
    moto's States.ALL matched it, so a Catch could hide it. (States.Runtime stays catchable here: moto
    also raises it for integration errors it cannot name, which AWS reports as task errors.)"""
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    from routing_manager.aws_limits import STATE_PAYLOAD_BYTES

    terminal = StatesErrorNameType.StatesStatesDataLimitExceeded
    before = StateTaskService._before_eval_execution

    def before_eval_execution(self: Any, env: Any, resource_runtime_part: Any, raw_parameters: Any,
                              state_credentials: Any) -> None:
        size = _utf8_size(raw_parameters)
        if size > STATE_PAYLOAD_BYTES:
            error = StatesErrorNameType.StatesStatesDataLimitExceeded
            raise FailureEventException(failure_event=FailureEvent(
                env=env, error_name=StatesErrorName(typ=error), event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(taskFailedEventDetails=TaskFailedEventDetails(  # type: ignore[typeddict-item]
                    error=error.to_name(), cause=f"The state '{self.name}' has an input after Parameters of "
                                                 f"{size} bytes, over the {STATE_PAYLOAD_BYTES}-byte quota."))))
        before(self, env=env, resource_runtime_part=resource_runtime_part, raw_parameters=raw_parameters,
               state_credentials=state_credentials)

    matches = ErrorEqualsDecl._eval_body

    def error_equals(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        if isinstance(error_name, StatesErrorName) and error_name.typ == terminal:
            env.stack.pop()
            env.stack.append(False)
            return
        matches(self, env)

    patches.enter_context(mock.patch.object(StateTaskService, "_before_eval_execution", before_eval_execution))
    patches.enter_context(mock.patch.object(ErrorEqualsDecl, "_eval_body", error_equals))


def failure_causes_as_text(patches: contextlib.ExitStack) -> None:
    """A task failure's cause is a string on AWS (TaskFailedEventDetails.cause); moto put PutEvents'
    whole response (a dict) there for EventBridge.FailedEntry, and a Fail state's CausePath passed
    the dict on as the execution's cause. Found by the second interpreter (tests/differential)."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_events import (
        StateTaskServiceEvents,
    )
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    from_error = StateTaskServiceEvents._from_error

    def textual(self: Any, env: Any, ex: Exception) -> Any:
        failure = from_error(self, env, ex)
        event_details: dict[str, Any] = dict(failure.event_details or {})
        details = event_details.get("taskFailedEventDetails") or {}  # the event's own dict: changed in place
        if "cause" in details and not isinstance(details["cause"], str):
            details["cause"] = to_json_str(details["cause"])
        return failure

    patches.enter_context(mock.patch.object(StateTaskServiceEvents, "_from_error", textual))


def run_express_machines_as_express(patches: contextlib.ExitStack) -> None:
    """moto records a machine's type but runs every execution as STANDARD (StateMachine.sm_type is
    fixed at "STANDARD"): the EXPRESS limits below would never apply."""
    from moto.stepfunctions.models import StateMachine

    init = StateMachine.__init__

    def state_machine_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.sm_type = self.type

    patches.enter_context(mock.patch.object(StateMachine, "__init__", state_machine_init))


def enforce_express_time_limit(patches: contextlib.ExitStack) -> None:
    """An EXPRESS execution still running after five minutes ends TIMED_OUT. Its clock is the real time
    plus the Retry waits compress_retry_waits skipped, so compressed tests time out where AWS would."""
    from moto.stepfunctions.parser.api import StateMachineType
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.asl.component.program.program import Program

    from routing_manager.aws_limits import EXPRESS_MAX_SECONDS

    original = Program.eval

    def eval_(self: Any, env: Any) -> None:
        if env.is_frame() or env.execution_type != StateMachineType.EXPRESS:
            original(self, env)
            return
        env.next_state_name = self.start_at.start_at_name

        def evaluate() -> None:
            # A thread id is reused once its thread ends: a wait another thread skipped under this id
            # must not count against this execution (it timed jobs out at random).
            _scaled_time.skipped.pop(threading.get_ident(), None)
            EvalComponent.eval(self, env)

        worker = threading.Thread(target=evaluate, daemon=True)
        started = time.monotonic()
        worker.start()
        while worker.is_alive():
            # join() returns as the execution ends; the timeout only bounds how late a time-out is seen.
            # (At 20 ms, 1,000 executions woke 50,000 times a second for the GIL.)
            worker.join(timeout=1.0)
            elapsed = time.monotonic() - started + _scaled_time.skipped.get(worker.ident or 0, 0.0)
            if worker.is_alive() and elapsed > EXPRESS_MAX_SECONDS:
                env.set_timed_out()
                break
        _scaled_time.skipped.pop(worker.ident or 0, None)

    patches.enter_context(mock.patch.object(Program, "eval", eval_))


def parse_each_update_expression_once(patches: contextlib.ExitStack) -> None:
    """moto parses a DynamoDB UpdateExpression (twice) for every UpdateItem: a seventh of the local stack's
    CPU under load. The workflow sends the same few expressions; their parsed trees are only read (the
    validator works on a deep copy), so each is parsed once."""
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    original = UpdateExpressionParser.make.__func__
    cache: dict[str, Any] = {}

    def make(cls: Any, expression: str) -> Any:
        tree = cache.get(expression)
        if tree is None:
            tree = cache[expression] = original(cls, expression)
        return tree

    patches.enter_context(mock.patch.object(UpdateExpressionParser, "make", classmethod(make)))


def parse_json_templates_as_json(patches: contextlib.ExitStack) -> None:
    """moto's CloudFormation loads every TemplateBody with PyYAML's pure-Python loader before it tries JSON:
    0.4 s of each deploy for the local stack's 300 KB of JSON. JSON is YAML, so a body that parses as JSON
    gives the same dict; anything else (the YAML of a user's template) goes to moto's own parser."""
    from moto.cloudformation.models import Stack

    original = Stack.parse_template

    def parse_template(template: str) -> dict[str, Any]:
        if template.lstrip().startswith("{"):
            with contextlib.suppress(ValueError):
                parsed = json.loads(template)
                if isinstance(parsed, dict):
                    return parsed
        result: dict[str, Any] = original(template)
        return result

    patches.enter_context(mock.patch.object(Stack, "parse_template", staticmethod(parse_template)))


MAX_RUNNING_EXECUTIONS = int(os.environ.get("ROUTING_MANAGER_LOCAL_EXECUTIONS", "16"))


def bound_running_executions(patches: contextlib.ExitStack, limit: int | None = None) -> None:
    """At most `limit` executions evaluate at once; the others are started (RUNNING, as StartExecution
    answered) and wait for a slot before their first state. AWS runs them all at once; here they share
    one interpreter and its GIL, and a burst of 1,000 left each so little time that DecideRoute's 10 s
    timed out for most (and the functions' Runtime API threads starved). Their EXPRESS clock starts
    with their first state."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    slots = threading.BoundedSemaphore(limit or MAX_RUNNING_EXECUTIONS)
    original: Any = ExecutionWorker._execution_logic

    def execution_logic(self: Any) -> None:
        with slots:
            original(self)

    patches.enter_context(mock.patch.object(ExecutionWorker, "_execution_logic", execution_logic))


def allow_deep_json(depth: int = 2_000) -> None:
    """JSON nested as deep as EventBridge accepts must reach the workflow's gate (which rejects past 32
    levels, job_too_deep): moto walks the execution input recursively and hit Python's recursion limit
    (1,000 frames) at about 450 levels, failing the execution with States.Runtime before its first
    state. Python 3.11 keeps Python frames off the C stack, so a higher limit is safe."""
    if sys.getrecursionlimit() < depth * 5:
        sys.setrecursionlimit(depth * 5)


def kill_execution(execution_arn: str) -> None:
    """End an execution whose thread a test killed mid-task, as AWS ends a killed EXPRESS execution: moto's
    interpreter would otherwise time the dead task out (its TimeoutSeconds) and retry it."""
    import datetime

    backend = _parser_backend(execution_arn)
    backend.describe_execution(execution_arn).stop(datetime.datetime.now(datetime.UTC), "Killed", "killed mid-task")


def restart_execution(execution_arn: str) -> None:
    """Run an execution again from the beginning under the same ARN, as AWS may run an asynchronous
    EXPRESS execution more than once (at-least-once). The first run's record stays in the history."""
    backend = _parser_backend(execution_arn)
    execution = backend.describe_execution(execution_arn)
    machine = backend.describe_state_machine(execution.state_machine.arn)
    machine.executions.remove(execution)
    backend.start_execution(machine.arn, name=execution.name, execution_input=json.dumps(execution.input_data))



# Which history events each LoggingConfiguration level writes (AWS: "Log levels" in the Step Functions guide).
_FATAL_EVENTS = {"ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}


def _logged_at(level: str, event_type: str) -> bool:
    if level == "ALL":
        return True
    if level == "ERROR":
        return event_type in _FATAL_EVENTS or event_type.endswith(("Failed", "TimedOut", "Aborted"))
    return level == "FATAL" and event_type in _FATAL_EVENTS


def log_executions_to_cloudwatch(patches: contextlib.ExitStack) -> None:
    """An ended execution writes its history to the state machine's log group, one JSON event per history
    event as AWS writes them (id, type, details, previous_event_id, event_timestamp, execution_arn), filtered
    by the level. moto writes nothing: its own publisher needs a session the backend never opens, and fails
    with a KeyError on CloudFormation's LoggingConfiguration. Without IncludeExecutionData, AWS leaves out
    input, output and parameters: so does this, and `job show` reads the path from it on AWS and here alike."""
    from moto.logs.models import logs_backends
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    terminated = BaseExecutionWorkerCommunication.terminated

    def log_then_end(self: Any) -> None:
        terminated(self)
        with contextlib.suppress(Exception):  # logging never fails an execution (AWS: best effort)
            _write_execution_log(self.execution, logs_backends)

    patches.enter_context(mock.patch.object(BaseExecutionWorkerCommunication, "terminated", log_then_end))


def _epoch_ms(value: Any) -> int:
    """A history timestamp (a datetime, or the ISO text moto's parser backend keeps) in epoch milliseconds."""
    import datetime

    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime.datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * (1000 if float(value) < 1e11 else 1))


def _write_execution_log(execution: Any, backends: Any) -> None:
    machine = execution.state_machine
    config = getattr(machine, "logging_config", None) or getattr(machine, "loggingConfiguration", None) or {}
    level = str(config.get("Level") or config.get("level") or "OFF")
    include_data = bool(config.get("IncludeExecutionData", config.get("includeExecutionData", False)))
    groups = [(d.get("CloudWatchLogsLogGroup") or d.get("cloudWatchLogsLogGroup") or {}) for d in
              config.get("Destinations") or config.get("destinations") or []]
    arns = [g.get("LogGroupArn") or g.get("logGroupArn") for g in groups]
    if level == "OFF" or not arns or not arns[0]:
        return
    _, _, _, region, account, _, group = str(arns[0]).split(":", 6)
    group = group.removesuffix(":*")
    lines = []
    for event in execution.to_history_output()["events"]:
        if not _logged_at(level, event["type"]):
            continue
        details = next((dict(v) for k, v in event.items() if k.endswith("EventDetails")), {})
        if not include_data:
            for key in ("input", "output", "parameters", "inputDetails", "outputDetails"):
                details.pop(key, None)
        timestamp = _epoch_ms(event["timestamp"])
        lines.append({"timestamp": timestamp, "message": json.dumps({
            "id": str(event["id"]), "type": event["type"], "details": details,
            "previous_event_id": str(event.get("previousEventId", 0)), "event_timestamp": str(timestamp),
            "execution_arn": execution.exec_arn, "redrive_count": "0"}, default=str)})
    if not lines:
        return
    backend = backends[account][region]
    stream = f"states/{execution.state_machine.name}/{time.strftime('%Y-%m-%d-%H-%M')}/{uuid.uuid4().hex}"
    backend.create_log_stream(group, stream)
    backend.put_log_events(group, stream, lines)


def enforce_event_entry_size(patches: contextlib.ExitStack) -> None:
    """A PutEvents entry over 256 KiB fails (its result entry carries the error; the others go on)."""
    from moto.events.models import EventsBackend

    from routing_manager.aws_limits import EVENTBRIDGE_ENTRY_BYTES
    from routing_manager.publish import entry_size as _entry_size

    original = EventsBackend.put_events

    def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fits = [e for e in events if _entry_size(e) <= EVENTBRIDGE_ENTRY_BYTES]
        if len(fits) == len(events) or len(events) > 10:
            return original(self, events)  # moto's own checks come first for a malformed request
        sent = iter(original(self, fits) if fits else [])
        return [next(sent) if _entry_size(e) <= EVENTBRIDGE_ENTRY_BYTES else
                {"ErrorCode": "ValidationException",
                 "ErrorMessage": f"Total size of the entry is over {EVENTBRIDGE_ENTRY_BYTES} bytes."}
                for e in events]

    patches.enter_context(mock.patch.object(EventsBackend, "put_events", put_events))


def enforce_sqs_message_size(patches: contextlib.ExitStack) -> None:
    """A message (body and attributes, in bytes) over the queue's MaximumMessageSize is refused; a queue
    that does not set it allows 256 KiB, as on AWS (moto allows 1 MiB and counts characters)."""
    from moto.sqs.exceptions import InvalidParameterValue
    from moto.sqs.models import Queue, SQSBackend

    from routing_manager.aws_limits import SQS_DEFAULT_MESSAGE_BYTES

    init = Queue.__init__

    def queue_init(self: Any, name: str, region: str, account_id: str, **kwargs: Any) -> None:
        kwargs.setdefault("MaximumMessageSize", SQS_DEFAULT_MESSAGE_BYTES)
        init(self, name, region, account_id, **kwargs)

    send = SQSBackend.send_message

    def send_message(self: Any, queue_name: str, message_body: str, message_attributes: Any = None,
                     *args: Any, **kwargs: Any) -> Any:
        limit = int(self.get_queue(queue_name).maximum_message_size)
        size = len(message_body.encode("utf-8", errors="surrogatepass"))
        for name, value in (message_attributes or {}).items():
            size += len(name.encode()) + len(str(value.get("data_type", "")).encode())
            size += len(str(value.get("string_value") or value.get("binary_value") or "").encode(
                "utf-8", errors="surrogatepass"))
        if size > limit:
            raise InvalidParameterValue(f"One or more parameters are invalid. Reason: Message must be shorter "
                                        f"than {limit} bytes.")
        return send(self, queue_name, message_body, message_attributes, *args, **kwargs)

    patches.enter_context(mock.patch.object(Queue, "__init__", queue_init))
    patches.enter_context(mock.patch.object(SQSBackend, "send_message", send_message))


PINNED_MOTO = "5.2.5"


class MotoVersionError(RuntimeError):
    """The adapters patch moto's internals as they are in the pinned version, and no other."""


def check_moto_version(installed: str | None = None) -> None:
    from importlib.metadata import version

    installed = installed or version("moto")
    if installed != PINNED_MOTO:
        raise MotoVersionError(
            f"the local stack's adapters are written for moto {PINNED_MOTO}, and moto {installed} is installed: "
            f"reinstall with `make setup`, or re-check every adapter (docs/LOCAL_STACK.md) before moving the pin")


# What fills a gap between moto and AWS: the local stack is wrong without it.
def name_eventbridge_sdk_integration(patches: contextlib.ExitStack) -> None:
    """`arn:aws:states:::aws-sdk:eventbridge:putEvents` is the name Step Functions gives EventBridge's
    SDK integration; moto 5.2.5 looks `eventbridge` up as a boto3 service, which is `events`, and fails
    the task with States.Runtime. The batch workflow (issue 26) needs the SDK integration: it answers
    FailedEntryCount per entry instead of failing the whole call, so only failed entries go again."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service

    overrides = state_task_service.StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES
    patches.enter_context(mock.patch.dict(overrides, {"eventbridge": "events"}))


# Jayway JsonPath's indefinite paths: a wildcard or slice anywhere, a filter, a deep scan, a union.
_INDEFINITE_PATH = re.compile(r"\[\s*(\*|\?|-?\d*\s*:|[^\]]*,)|\.\*|\.\.")


def indefinite_paths_as_lists(patches: contextlib.ExitStack) -> None:
    """Step Functions evaluates JSONPath with Jayway JsonPath, where an indefinite path (a wildcard, a
    slice, a filter, a deep scan, a union) always yields the array of its matches: empty when nothing
    matches, one element for one match. Only a definite path that matches nothing is a States.Runtime
    error. moto 5.2.5 returns [] only for a single wildcard like `$.a[*].b`, fails `$[*].lost[*]` or
    `$.a[?(@.s)]` when nothing matches, and gives the bare value for a single match of
    `$.a[*].counted.failed`. The batch workflow flattens and counts lists that may be empty or hold one."""
    import importlib

    from moto.stepfunctions.parser.asl.utils import json_path

    original = json_path.extract_json

    def extract_json(path: str, data: Any) -> Any:
        if _INDEFINITE_PATH.search(path):
            return [match.value for match in json_path.parse(path).find(data)]  # type: ignore[attr-defined]
        return original(path, data)

    for name in ("moto.stepfunctions.parser.asl.component.common.string.string_expression",
                 "moto.stepfunctions.parser.asl.component.intrinsic.argument.argument",
                 "moto.stepfunctions.parser.asl.eval.states"):
        importlib.import_module(name)
    users = [m for n, m in list(sys.modules.items())
             if n.startswith("moto.stepfunctions.parser") and getattr(m, "extract_json", None) is original]
    for module in users:
        patches.enter_context(mock.patch.object(module, "extract_json", extract_json))


LOCAL_TASK_TIMEOUT_SCALE = 10


def give_task_timeouts_headroom(patches: contextlib.ExitStack, scale: int = LOCAL_TASK_TIMEOUT_SCALE) -> None:
    """A Task's TimeoutSeconds is sized for the service's own latency (milliseconds for DynamoDB,
    PutEvents or SendMessageBatch on AWS). The local stack serves every service from one Python
    process, where a call waits for the GIL and the DynamoDB lock: on two loaded cores a 100-job
    batch saw PutEvents calls of 10 entries take 3.2 s and marks 1.2 s. A timeout that fires on a
    call that then succeeds makes the Retry repeat a write or an announcement AWS would have made
    once, so the local stack waits `scale` times TimeoutSeconds. A task that hangs still ends: 50 s
    for the workflow's 5 s tasks, within the EXPRESS execution's 5 minutes."""
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds

    original = TimeoutSeconds._eval_seconds

    def _eval_seconds(self: Any, env: Any) -> int:
        seconds: int = original(self, env)
        return seconds if self.is_default_value() else seconds * scale

    patches.enter_context(mock.patch.object(TimeoutSeconds, "_eval_seconds", _eval_seconds))


GAPS: tuple[Callable[[contextlib.ExitStack], None], ...] = (
    route_cfn_state_machines, deliver_events_to_step_functions, invoke_lambda_functions, announce_alarm_state_changes,
    create_cfn_alarms,
    serialize_dynamodb_requests, failure_causes_as_text, run_express_machines_as_express,
    enforce_state_payload_quota, enforce_express_time_limit, enforce_event_entry_size, enforce_sqs_message_size,
    log_executions_to_cloudwatch, name_eventbridge_sdk_integration, indefinite_paths_as_lists,
    give_task_timeouts_headroom, share_global_table_replicas, create_cfn_global_endpoints,
)
# What only makes it faster: ROUTING_MANAGER_LOCAL_SPEEDUPS=0 runs without them (and slowly: retry
# waits as long as on AWS, a parse and a client per call).
SPEED_UPS: tuple[Callable[[contextlib.ExitStack], None], ...] = (
    compress_retry_waits, count_queue_messages_in_one_pass, parse_each_json_path_once, parse_each_definition_once,
    reuse_interpreter_clients, bound_running_executions, parse_each_update_expression_once,
    parse_json_templates_as_json,
)
SPEED_UPS_ENV = "ROUTING_MANAGER_LOCAL_SPEEDUPS"


@contextlib.contextmanager
def adapted(speed_ups: bool | None = None,
            without: tuple[Callable[[contextlib.ExitStack], None], ...] = ()) -> Iterator[None]:
    """moto with the adapters applied for the block, every patch undone after it. Not nested: a second
    application would wrap moto's methods twice (two executions per event)."""
    global _applied
    check_moto_version()
    if _applied:
        raise RuntimeError("the moto adapters are already applied (uninstall() or leave that block first)")
    if speed_ups is None:
        speed_ups = os.environ.get(SPEED_UPS_ENV, "1") != "0"
    with contextlib.ExitStack() as patches:
        for adapter in (*GAPS, *(SPEED_UPS if speed_ups else ())):
            if adapter not in without:
                adapter(patches)
        allow_deep_json()
        warm_service_models()
        _applied = True
        try:
            yield
        finally:
            _applied = False


_applied = False


_installed: contextlib.ExitStack | None = None


def install() -> None:
    """The adapters on until uninstall(): for a process that is the local stack (local run, local up)
    and the test fixtures that deploy it. Applying them twice would wrap moto twice, so it is once."""
    global _installed
    if _installed is None:
        patches = contextlib.ExitStack()
        patches.enter_context(adapted())
        _installed = patches


def uninstall() -> None:
    global _installed
    if _installed is not None:
        _installed.close()
        _installed = None
