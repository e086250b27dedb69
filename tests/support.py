"""What the local-stack tests share: a job, submitting it, reading what it left behind."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from routing_manager.events import SubmittedEvent
from routing_manager.local import runner
from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack


def job(**changes: Any) -> dict[str, Any]:
    detail = {"jobId": f"job-{uuid.uuid4()}", "userId": "user-123", "prompt": "A corgi surfing on a beach at sunset",
              "lengthSec": 8, "resolution": "720p", "tier": "standard", "provider": "auto"}
    detail.update(changes)
    return {k: v for k, v in detail.items() if v is not ...}


def submit(stack: LocalStack, *details: Any, timeout: float = 30.0) -> list[runner.JobResult]:
    events = [SubmittedEvent("frontend.api", "video.job.submitted", d, "test") for d in details]
    return runner.publish_and_wait(stack, events, timeout=timeout)


def messages_for(stack: LocalStack, output_key: str, job_id: str) -> list[dict[str, Any]]:
    return [m for m in stack.messages(stack.outputs[output_key])
            if m.get("MessageAttributes", {}).get("jobId", {}).get("StringValue") == job_id]


def events_for(stack: LocalStack, job_id: Any) -> list[dict[str, Any]]:
    return [e for e in stack.outcome_events() if e["detail"].get("jobId") == job_id]


def nested(depth: int) -> Any:
    """A value nested `depth` levels deep (lists or objects)."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


def body(message: dict[str, Any]) -> Any:
    return json.loads(message["Body"])


# A routing table that routes on the credit balance (the shipped one does not): funded users go to
# Replicate, the rest by the MVP rule.
CREDITS_TABLE = {
    "version": 1,
    "providers": {
        "fal": {"queue": "FalJobQueue", "queueUrlEnv": "FAL_QUEUE_URL", "defaultModel": "wan-i2v",
                "limits": {"maxLengthSec": 10, "resolutions": ["720p"], "audio": False},
                "prices": {"wan-i2v": {"perSecondUsd": {"720p": 0.08}, "source": "tests"}}},
        "replicate": {"queue": "ReplicateJobQueue", "queueUrlEnv": "REPLICATE_QUEUE_URL",
                      "defaultModel": "minimax/video-01", "limits": {"maxLengthSec": 300},
                      "prices": {"minimax/video-01": {"perSecondUsd": {"720p": 0.0833}, "source": "tests"}}},
    },
    "rules": [{"name": "funded-to-replicate", "when": {"minCredits": 5}, "route": {"provider": "replicate"}},
              {"name": "short-720p-to-fal", "when": {"lengthSec": {"max": 10}, "resolution": ["720p"]},
               "route": {"provider": "fal"}}],
}


def credits_table() -> str:
    """A Credits table in the mocked account where `rich-user` holds 42."""
    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    name = f"Credits-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "userId", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "userId", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    ddb.put_item(TableName=name, Item={"userId": {"S": "rich-user"}, "balance": {"N": "42"}})
    return name


def deploy_routing_on_credits(folder: Path) -> LocalStack:
    """A stack of its own whose rules Lambda loads CREDITS_TABLE, with a Credits table configured."""
    table = folder / "routing_table.json"
    table.write_text(json.dumps(CREDITS_TABLE))
    return local_stack.deploy_unique(parameters={"CreditsTableName": credits_table()},
                                     function_environment={"ROUTING_TABLE_PATH": str(table)})


def deploy_with_table(folder: Path, change: Any) -> LocalStack:
    """A stack of its own whose rules Lambda loads the shipped routing table as `change` edits it."""
    from routing_manager import project

    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    change(table)
    path = folder / "routing_table.json"
    path.write_text(json.dumps(table))
    return local_stack.deploy_unique(function_environment={"ROUTING_TABLE_PATH": str(path)})


def budgeted(table: dict[str, Any]) -> None:
    """fal may spend $5 a day: seven 8-second 720p jobs at $0.64."""
    table["providers"]["fal"]["dailyBudgetUsd"] = 5.0


def spent_today(stack: LocalStack, provider: str) -> float:
    import time

    item = stack.client("dynamodb").get_item(
        TableName=stack.outputs["ProviderStateTableName"], ConsistentRead=True,
        Key={"pk": {"S": "budget"}, "sk": {"S": f"{provider}#{time.strftime('%Y-%m-%d', time.gmtime())}"}}).get("Item")
    return float(item["spentUsd"]["N"]) if item else 0.0


def failing_sqs_entries(monkeypatch: Any, job_id: str, times: int) -> list[list[str]]:
    """SendMessageBatch answers the entry of `job_id` in Failed (InternalError) the first `times`
    calls that carry it, and sends the others. Returns the jobIds of every call, in order."""
    from moto.sqs.models import SQSBackend

    original, calls = SQSBackend.send_message_batch, []

    def send_message_batch(backend: Any, queue_name: str, entries: dict[str, Any]) -> Any:
        job_ids = {key: json.loads(entry["MessageBody"]).get("jobId") for key, entry in entries.items()}
        calls.append(sorted(job_ids.values()))
        failing = [key for key, sent in job_ids.items()
                   if sent == job_id and sum(job_id in call for call in calls) <= times]
        sent, failed = original(backend, queue_name, {k: v for k, v in entries.items() if k not in failing})
        return sent, failed + [{"Id": entries[k]["Id"], "SenderFault": False, "Code": "InternalError",
                                "Message": "injected"} for k in failing]

    monkeypatch.setattr(SQSBackend, "send_message_batch", send_message_batch)
    return calls


def refused_outcome_events(monkeypatch: Any, job_id: str, times: int) -> list[list[Any]]:
    """PutEvents answers an error entry (ThrottlingException) for the event of `job_id` the first
    `times` calls that carry it, and puts the others. Returns the jobIds of every call, in order."""
    from moto.events.models import EventsBackend

    original, calls = EventsBackend.put_events, []

    def put_events(backend: Any, events: list[dict[str, Any]]) -> Any:
        job_ids = [json.loads(e.get("Detail") or "{}").get("jobId") for e in events]
        calls.append(job_ids)
        if job_id not in job_ids or sum(job_id in call for call in calls) > times:
            return original(backend, events)
        answers = original(backend, [e for e, sent in zip(events, job_ids, strict=True) if sent != job_id])
        answers.insert(job_ids.index(job_id), {"ErrorCode": "ThrottlingException", "ErrorMessage": "injected"})
        return answers

    monkeypatch.setattr(EventsBackend, "put_events", put_events)
    return calls
