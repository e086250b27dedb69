"""The AWS limits and semantics the product depends on, in one place, each with the page it comes from.

The local stack enforces them over moto (routing_manager.local.moto_adapters), the tests check the
template and the ASL against them, and docs/ARCHITECTURE.md ("AWS limits and semantics") lists them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Step Functions quotas, "Quotas related to state machine executions": input or output of a task,
# state or execution at most 256 KiB as UTF-8; "Handling errors": over it, States.DataLimitExceeded,
# which States.ALL does not catch (nor a state's input after Parameters over it).
STATE_PAYLOAD_BYTES = 256 * 1024
# Step Functions, "Choosing workflow type": an EXPRESS execution runs at most five minutes and then
# times out (status TIMED_OUT); it is at-least-once and may run more than once.
EXPRESS_MAX_SECONDS = 300
# What this product allows itself of those five minutes on its longest path (tests/template).
WORKFLOW_BUDGET_SECONDS = 240
# EventBridge quotas: a PutEvents entry (Source, DetailType, Detail, Resources) at most 256 KiB.
EVENTBRIDGE_ENTRY_BYTES = 256 * 1024
# SQS: a message (body and attributes) at most the queue's MaximumMessageSize, 256 KiB by default.
SQS_DEFAULT_MESSAGE_BYTES = 256 * 1024
# DynamoDB, "Quotas": an item at most 400 KB, a partition key value at most 2,048 bytes.
DYNAMODB_ITEM_BYTES = 400 * 1024
DYNAMODB_PARTITION_KEY_BYTES = 2048

# Retry policies, each Task states the one for its integration.
#
# Transient: any task error but the ones listed as never retried. Matching States.TaskFailed rather
# than a list of error names means a throttling error named differently from what we guessed is
# still retried (Step Functions names integration errors after the SDK's exceptions, and those names
# are not all documented). The cost of a permanent error missing from the never-retried list is two
# more attempts, inside the time budget below.
TRANSIENT = {"ErrorEquals": ["States.TaskFailed", "States.Timeout"], "IntervalSeconds": 1, "MaxAttempts": 2,
             "BackoffRate": 2, "MaxDelaySeconds": 4, "JitterStrategy": "FULL"}
# MaxAttempts 0: "the error is never retried" (Amazon States Language, Retriers). Errors that a retry
# cannot fix, matched before TRANSIENT; each is then caught into a recorded path.
NEVER_RETRIED_DYNAMODB = {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException", "DynamoDB.ValidationException",
                                          "DynamoDB.ResourceNotFoundException"], "MaxAttempts": 0}
NEVER_RETRIED_SQS = {"ErrorEquals": ["SQS.QueueDoesNotExistException", "SQS.InvalidMessageContentsException"],
                     "MaxAttempts": 0}
# Lambda: the names AWS documents for transient Lambda service errors ("Handle Lambda service
# exceptions", Step Functions best practices); a function error (its own exception, Lambda.Unknown)
# is not retried: the same input fails the same way.
LAMBDA_SERVICE = {"ErrorEquals": ["Lambda.ClientExecutionTimeoutException", "Lambda.ServiceException",
                                  "Lambda.AWSLambdaException", "Lambda.SdkClientException",
                                  "Lambda.TooManyRequestsException"],
                  "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2, "MaxDelaySeconds": 4,
                  "JitterStrategy": "FULL"}

# The Retry list each kind of Task must have, by its Resource.
RETRY_BY_RESOURCE: dict[str, list[dict[str, Any]]] = {
    "arn:aws:states:::lambda:invoke": [LAMBDA_SERVICE],
    "arn:aws:states:::dynamodb:updateItem": [NEVER_RETRIED_DYNAMODB, TRANSIENT],
    "arn:aws:states:::dynamodb:getItem": [TRANSIENT],  # a failed credits read degrades, whatever it was
    "arn:aws:states:::sqs:sendMessage": [NEVER_RETRIED_SQS, TRANSIENT],
    "arn:aws:states:::events:putEvents": [TRANSIENT],
    "arn:aws:states:::aws-sdk:cloudwatch:putMetricData": [TRANSIENT],
}
# A call to an AWS API answers in milliseconds; five seconds is a hang. The rules function's own
# timeout (8 s, template.yaml) is below its Task's, so the function says why it stopped.
TIMEOUT_BY_RESOURCE = {resource: 5 for resource in RETRY_BY_RESOURCE} | {"arn:aws:states:::lambda:invoke": 10}


def retry_sleeps(retrier: Mapping[str, Any]) -> float:
    """The longest a retrier can sleep in all (full jitter sleeps at most the computed delay)."""
    interval = retrier.get("IntervalSeconds", 1)
    rate = retrier.get("BackoffRate", 2.0)
    cap = retrier.get("MaxDelaySeconds", float("inf"))
    return float(sum(min(interval * rate ** k, cap) for k in range(retrier.get("MaxAttempts", 3))))


def task_worst_case(state: Mapping[str, Any]) -> float:
    """Every attempt running to its TimeoutSeconds, every retry sleeping its longest."""
    retriers = state.get("Retry", [])
    attempts = 1 + sum(r.get("MaxAttempts", 3) for r in retriers)
    return float(attempts * state["TimeoutSeconds"] + sum(retry_sleeps(r) for r in retriers))


def _successors(state: Mapping[str, Any]) -> Iterator[str]:
    yield from (c["Next"] for c in state.get("Choices", []))
    yield from (c["Next"] for c in state.get("Catch", []))
    for key in ("Next", "Default"):
        if key in state:
            yield state[key]


def worst_case(definition: Mapping[str, Any]) -> tuple[float, list[str]]:
    """The longest an execution can take, over every path without a repeated state, and that path."""
    states = definition["States"]

    def cost(name: str) -> float:
        state = states[name]
        return task_worst_case(state) if state["Type"] == "Task" else 0.0

    best: tuple[float, list[str]] = (0.0, [])

    def walk(name: str, path: list[str], total: float) -> None:
        nonlocal best
        path, total = [*path, name], total + cost(name)
        if total > best[0]:
            best = (total, path)
        for successor in set(_successors(states[name])):
            if successor not in path:
                walk(successor, path, total)

    walk(definition["StartAt"], [], 0.0)
    return best
