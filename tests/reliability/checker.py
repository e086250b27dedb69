"""A checker in the spirit of Jepsen's queue checker: for each job submitted, what reached the
provider queues, the Jobs table and the event bus. Reports lost, duplicated and unexpected."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from routing_manager.local.stack import LocalStack

QUEUE_OUTPUTS = ("FalJobQueueUrl", "ReplicateJobQueueUrl")


@dataclass
class Report:
    submitted: set[str]
    messages: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    records: dict[str, str] = field(default_factory=dict)

    @property
    def lost(self) -> set[str]:
        """Submitted, but without a final record, or (routed) without its message."""
        final = {j for j, status in self.records.items() if status in ("ROUTED", "REJECTED")}
        routed_without_message = {j for j, s in self.records.items() if s == "ROUTED" and not self.messages[j]}
        return (self.submitted - final) | routed_without_message

    @property
    def duplicated(self) -> dict[str, tuple[int, int]]:
        """Jobs with more than one message or more than one outcome event."""
        return {j: (self.messages[j], self.events[j]) for j in self.submitted
                if self.messages[j] > 1 or self.events[j] > 1}

    @property
    def unexpected(self) -> set[str]:
        """Messages, events or records for jobs nobody submitted."""
        return (set(self.messages) | set(self.events) | set(self.records)) - self.submitted

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected)

    def summary(self) -> str:
        return (f"{len(self.submitted)} submitted, {sum(self.messages.values())} messages, "
                f"{sum(self.events.values())} events, {len(self.records)} records; lost {len(self.lost)}, "
                f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}")


def check(stack: LocalStack, submitted: set[str]) -> Report:
    report = Report(submitted=set(submitted))
    for key in QUEUE_OUTPUTS:
        for message in stack.messages(stack.outputs[key]):
            report.messages[message["MessageAttributes"]["jobId"]["StringValue"]] += 1
    for event in stack.outcome_events():
        job_id = event["detail"].get("jobId")
        if job_id is not None:
            report.events[job_id] += 1
    ddb = stack.client("dynamodb")
    kwargs: dict[str, Any] = {"TableName": stack.outputs["JobsTableName"], "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            report.records[item["jobId"]["S"]] = item["status"]["S"]
        if "LastEvaluatedKey" not in page:
            return report
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def as_json(report: Report) -> str:
    return json.dumps({"lost": sorted(report.lost), "duplicated": report.duplicated,
                       "unexpected": sorted(report.unexpected)})
