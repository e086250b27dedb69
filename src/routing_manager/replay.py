"""Finding failed jobs and re-submitting them (EXPRESS workflows have no redrive).

Sources: FAILED records in the Jobs table (with the submitted detail), the workflow's failure
queue, the EventBridge rule's dead-letter queue, and claims left CLAIMED by an execution that
died (older than a stale window). Replay re-publishes the original detail; the workflow's
claim makes that safe: a job routed or rejected meanwhile ends as a duplicate, never enqueued
twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from routing_core.batch import BATCH_DETAIL_TYPE
from routing_core.contract import SUBMITTED_DETAIL_TYPE

from routing_manager.events import put_events_entry

STALE_CLAIM_REASON = "state_error:stale_claim"
ReplayOutcome = Literal["replayed", "would_replay", "not_replayable", "done", "skipped", "not_sent"]
DONE = ("ROUTED", "REJECTED")


@dataclass
class Candidate:
    jobId: str | None
    source: str  # record | stale-claim | failure-queue | dlq
    reason: str
    since: datetime | None
    event: dict[str, Any] | None
    claimedBy: str | None = None
    status: str | None = None  # the record's status when the candidate came from a queue
    messages: list[tuple[str, str]] = field(default_factory=list)  # (queue URL, receipt handle)
    action: str = ""  # what happened, for a person
    outcome: ReplayOutcome | None = None  # what happened, for a script
    problem: str | None = None  # why what was stored cannot be replayed
    # The jobs of one failure-queue message holding a batch: it is deleted once all are replayed or done.
    siblings: list[Candidate] = field(default_factory=list, repr=False)

    @property
    def actionable(self) -> bool:
        return self.event is not None and self.status not in DONE


def utc_time(text: Any) -> datetime | None:
    """An ISO 8601 time (a trailing Z allowed; UTC unless it says), or None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _detail_job_id(event: Any) -> str | None:
    detail = event.get("detail") if isinstance(event, dict) else None
    job_id = detail.get("jobId") if isinstance(detail, dict) else None
    return job_id if isinstance(job_id, str) else None


def _records(ddb: Any, table: str) -> list[dict[str, Any]]:
    """FAILED and CLAIMED items. A Scan (the shared table has no index of ours): its cost is one
    read of the table, paid only when an operator runs replay."""
    from boto3.dynamodb.types import TypeDeserializer

    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": table, "FilterExpression": "#s IN (:failed, :claimed)",
        "ExpressionAttributeNames": {"#s": "status"},
        "ExpressionAttributeValues": {":failed": {"S": "FAILED"}, ":claimed": {"S": "CLAIMED"}}}
    deserializer = TypeDeserializer()
    while True:
        page = ddb.scan(**kwargs)
        items.extend({k: deserializer.deserialize(v) for k, v in item.items()} for item in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _drain(sqs: Any, url: str, visibility: int) -> list[dict[str, Any]]:
    """Every visible message, hidden for `visibility` seconds while replay decides."""
    found: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                    MessageAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return found
        found.extend(batch)


def find(ddb: Any, sqs: Any, table: str, failure_queue: str | None, dlq: str | None,
         stale_after: timedelta, now: datetime | None = None, visibility: int = 60) -> list[Candidate]:
    now = now or datetime.now(UTC)
    by_job: dict[str, Candidate] = {}
    others: list[Candidate] = []
    records = {r["jobId"]: r for r in _records(ddb, table)}
    for job_id, record in records.items():
        event, problem = _stored_event(record)
        if record["status"] == "FAILED":
            by_job[job_id] = Candidate(job_id, "record", record.get("failureReason", "?"),
                                       utc_time(record.get("failedAt")), event, status="FAILED", problem=problem)
        elif (claimed := utc_time(record.get("claimedAt"))) and now - claimed > stale_after:
            by_job[job_id] = Candidate(job_id, "stale-claim", STALE_CLAIM_REASON, claimed, event,
                                       claimedBy=record.get("claimedBy"), status="CLAIMED", problem=problem)

    drained: list[tuple[str, str]] = []
    try:
        for url, source in [(failure_queue, "failure-queue"), (dlq, "dlq")]:
            for message in _drain(sqs, url, visibility) if url else []:
                drained.append((url, message["ReceiptHandle"]))  # type: ignore[arg-type]
                _add_message(by_job, others, ddb, table, url, source, message)  # type: ignore[arg-type]
    except BaseException:  # nothing read stays hidden for the visibility timeout
        _make_visible(sqs, drained)
        raise
    return sorted([*by_job.values(), *others], key=lambda c: (c.since or now, c.jobId or ""))


def _stored_event(record: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    if not record.get("submittedDetail"):
        return None, "no submitted detail stored with the record"
    try:
        return {"detail": json.loads(record["submittedDetail"])}, None
    except ValueError:
        return None, "the stored submittedDetail is not JSON"


def _add_message(by_job: dict[str, Candidate], others: list[Candidate], ddb: Any, table: str, url: str,
                 source: str, message: dict[str, Any]) -> None:
    attrs = message.get("MessageAttributes", {})
    receipt = (url, message["ReceiptHandle"])
    try:
        body = json.loads(message["Body"])
    except ValueError:
        job_id = attrs.get("jobId", {}).get("StringValue")
        others.append(Candidate(job_id, source, "unreadable", None, None, messages=[receipt],
                                problem="the message body is not JSON"))
        return
    if source == "failure-queue" and isinstance(body, dict):
        event, reason = body.get("event"), str(body.get("reason", "?"))
    else:  # EventBridge dead-letters the event itself; the error is an attribute
        event = body
        error = attrs.get("ERROR_CODE") or attrs.get("ERROR_MESSAGE") or {}
        reason = "undelivered:" + error.get("StringValue", "?")
    if _is_batch(event):  # replay works per job: each of the batch's jobs is a candidate of its own
        assert isinstance(event, dict)
        siblings: list[Candidate] = []
        for job in event["detail"]["jobs"]:
            one = {**event, "detail-type": SUBMITTED_DETAIL_TYPE, "detail": job}
            siblings.append(_add_event(by_job, others, ddb, table, receipt, source, reason, one,
                                       job.get("jobId") if isinstance(job, dict) else None))
        for candidate in siblings:
            candidate.siblings = siblings
        return
    _add_event(by_job, others, ddb, table, receipt, source, reason, event,
               _detail_job_id(event) or attrs.get("jobId", {}).get("StringValue"))


def _is_batch(event: Any) -> bool:
    return isinstance(event, dict) and event.get("detail-type") == BATCH_DETAIL_TYPE \
        and isinstance(event.get("detail"), dict) and isinstance(event["detail"].get("jobs"), list)


def _add_event(by_job: dict[str, Candidate], others: list[Candidate], ddb: Any, table: str,
               receipt: tuple[str, str], source: str, reason: str, event: Any, job_id: Any) -> Candidate:
    job_id = job_id if isinstance(job_id, str) and job_id else None
    if job_id and job_id in by_job:
        known = by_job[job_id]
        known.messages.append(receipt)
        if known.event is None and isinstance(event, dict) and isinstance(event.get("detail"), dict):
            # e.g. the rules Lambda failed before the claim kept the detail: the queue has it
            known.event, known.problem = event, None
        return known
    status = None
    if job_id:
        item = ddb.get_item(TableName=table, Key={"jobId": {"S": job_id}}, ConsistentRead=True,
                            ProjectionExpression="#s", ExpressionAttributeNames={"#s": "status"}).get("Item")
        status = item["status"]["S"] if item and "status" in item else None
    readable = isinstance(event, dict) and isinstance(event.get("detail"), dict)
    candidate = Candidate(job_id, source, reason, utc_time(event.get("time")) if isinstance(event, dict) else None,
                          event if readable else None, status=status, messages=[receipt],
                          problem=None if readable else "the message holds no event detail")
    if job_id:
        by_job[job_id] = candidate
    else:
        others.append(candidate)
    return candidate


def select(candidates: list[Candidate], job_ids: list[str] | None = None, since: datetime | None = None,
           reason: str | None = None) -> list[Candidate]:
    chosen = candidates
    if job_ids:
        chosen = [c for c in chosen if c.jobId in job_ids]
    if since:
        chosen = [c for c in chosen if c.since is None or c.since >= since]
    if reason:
        chosen = [c for c in chosen if c.reason.startswith(reason)]
    return chosen


def replay(candidates: list[Candidate], ddb: Any, sqs: Any, events: Any, table: str,
           event_bus: str | None, yes: bool) -> list[Candidate]:
    """Dry run unless `yes`: sets each candidate's `action` and, with `yes`, carries it out."""
    from botocore.exceptions import ClientError

    for c in candidates:
        if c.status in DONE:  # only queue messages can be behind a finished job
            if yes:
                _consume(sqs, c)
            c.outcome = "done"
            c.action = f"already {c.status.lower()}: " + ("message removed" if yes else "skip")
            continue
        if c.event is None:
            c.outcome = "not_replayable"
            c.action = f"not replayable: {c.problem or 'no event stored'}" + (" (message kept)" if c.messages else "")
            continue
        if (refused := _over_contract_limits(c.event)) is not None:
            c.outcome = "not_replayable"
            c.action = f"not replayable: {refused} (over the contract's limits, it can only be rejected; messages kept)"
            continue
        if not yes:
            c.outcome = "would_replay"
            c.action = "would release claim and replay" if c.source == "stale-claim" else "would replay"
            continue
        if c.source == "stale-claim":
            try:  # only if the dead execution still holds it
                ddb.update_item(
                    TableName=table, Key={"jobId": {"S": c.jobId}},
                    UpdateExpression="SET #s = :failed, failureReason = :reason, failedAt = :now REMOVE claimedBy",
                    ConditionExpression="#s = :claimed AND claimedBy = :holder",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":failed": {"S": "FAILED"}, ":claimed": {"S": "CLAIMED"},
                                               ":holder": {"S": c.claimedBy or ""},
                                               ":reason": {"S": STALE_CLAIM_REASON},
                                               ":now": {"S": datetime.now(UTC).isoformat()}})
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                c.outcome = "skipped"
                c.action = "claim moved on meanwhile: skipped"
                continue
        answer = events.put_events(Entries=[put_events_entry(c.event["detail"], event_bus)])["Entries"][0]
        if answer.get("EventId"):
            _consume(sqs, c)
            c.outcome = "replayed"
            c.action = f"replayed as {answer['EventId']}"
        else:
            c.outcome = "not_sent"
            c.action = f"not sent: {answer.get('ErrorCode')} (messages kept)"
    return candidates


def _over_contract_limits(event: dict[str, Any]) -> str | None:
    """Why a stored job can never run, if so: for one far over the limits, Step Functions refuses even
    to start the execution (its input is over 256 KiB), and EventBridge dead-letters it again."""
    from routing_core import limits

    detail = event.get("detail")
    return limits.check(detail)[1] if isinstance(detail, dict) else None


def _consume(sqs: Any, c: Candidate) -> None:
    """Delete the messages behind a job replayed or done, unless one holds a batch whose other jobs
    are not yet: the last of them deletes it, and a run that stops before keeps it for the next."""
    if any(s.outcome not in ("replayed", "done") for s in c.siblings if s is not c):
        return
    _delete(sqs, c.messages)


def _delete(sqs: Any, messages: list[tuple[str, str]]) -> None:
    for url, receipt in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
    messages.clear()


def release(sqs: Any, candidates: list[Candidate]) -> None:
    """Make every message replay read but did not consume visible again at once, so a dry run
    or a filtered replay hides nothing from the next run."""
    for c in candidates:
        _make_visible(sqs, c.messages)
        c.messages.clear()


def _make_visible(sqs: Any, messages: list[tuple[str, str]]) -> None:
    for url, receipt in messages:
        try:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except Exception:  # noqa: BLE001  best effort: it comes back after its visibility timeout anyway
            continue
