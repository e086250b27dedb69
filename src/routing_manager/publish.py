"""Publishing submitted jobs to EventBridge, as a frontend does. Importable:

    from routing_manager.publish import publish_jobs
    results = publish_jobs([detail, ...], client=boto3.client("events"))

Each job is validated against the contract first (an invalid one is reported, never sent),
wrapped in the envelope (source `frontend.api`, detail-type `video.job.submitted`), batched
by PutEvents' limits (10 entries, 256 KB) and its failed entries retried with backoff.
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from routing_core import batch as batch_contract
from routing_core.reasons import INVALID_LENGTH_RANGE, INVALID_ROUTING

from routing_manager.aws_limits import EVENTBRIDGE_ENTRY_BYTES
from routing_manager.events import put_events_entry

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = EVENTBRIDGE_ENTRY_BYTES  # a request's entries together, as one entry alone
RETRYABLE_CALL_ERRORS = {"ThrottlingException", "InternalException", "ServiceUnavailable", "InternalFailure"}


PublishOutcome = Literal["sent", "invalid", "not_sent"]


@dataclass
class Published:
    origin: str
    jobId: Any
    eventId: str | None = None
    error: str | None = None
    outcome: PublishOutcome = "not_sent"  # invalid: the contract refuses it; not_sent: AWS did not take it
    batchId: str | None = None  # publish_batches: the batch event that carried the job

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


def validation_error(detail: Any, known_models: Mapping[str, frozenset[str]] | None = None,
                     known_regions: frozenset[str] | None = None) -> str | None:
    """None for a job the contract accepts, else one line naming each bad field. `routing` names providers,
    models and provider regions: they are checked against `known_models` (provider -> its models) and
    `known_regions`, by default the routing table the rules function ships with (ROUTING_TABLE_PATH overrides
    it, as for `explain`)."""
    from pydantic import ValidationError
    from routing_core import preferences
    from routing_core.contract import SubmittedJob

    try:
        SubmittedJob.model_validate(detail)
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "detail"
            message = err["msg"].removeprefix("Value error, ")
            if field == "lengthSec" and err["type"] in ("greater_than_equal", "less_than_equal"):
                message = INVALID_LENGTH_RANGE  # the reason code the router would reject it with
            parts.append(f"{field}: {message}")
        return "; ".join(parts)
    try:
        preferences.parse(detail, known_models if known_models is not None else _bundled_table()[0], None,
                          known_regions if known_regions is not None else _bundled_table()[1])
    except ValueError as exc:
        return f"{INVALID_ROUTING}: {exc}"
    return None


@functools.cache
def _bundled_table() -> tuple[dict[str, frozenset[str]], frozenset[str]]:
    """(provider -> its models, every provider region) of the routing table the rules function ships with."""
    import os
    from pathlib import Path

    from routing_core.loading import DEFAULT_TABLE, load_table
    from routing_core.preferences import known_names

    return known_names(load_table(Path(os.environ.get("ROUTING_TABLE_PATH") or DEFAULT_TABLE)))


def entry_size(entry: dict[str, Any]) -> int:
    """PutEvents' size of an entry: Source, DetailType, Detail and Resources, UTF-8."""
    return sum(len(str(entry.get(key, "")).encode()) for key in ("Source", "DetailType", "Detail")) + sum(
        len(r.encode()) for r in entry.get("Resources", []))


_Pending = tuple[list[Published], dict[str, Any]]


def _batches(items: list[_Pending]) -> Iterable[list[_Pending]]:
    batch: list[_Pending] = []
    size = 0
    for item in items:
        item_size = entry_size(item[1])
        if batch and (len(batch) == MAX_ENTRIES or size + item_size > MAX_REQUEST_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch


def publish_jobs(jobs: Iterable[Any], client: Any, event_bus: str | None = None, max_attempts: int = 5,
                 base_delay: float = 0.2, origins: Iterable[str] | None = None,
                 on_progress: Callable[[int], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> list[Published]:
    """Validate, batch and send; returns one result per job, in order. When AWS cannot be reached (no
    endpoint, no credentials, no region), the batches already sent keep their event ids and every job
    not sent says why: nothing is left unreported."""
    jobs = list(jobs)
    names = list(origins) if origins is not None else [f"job[{i}]" for i in range(len(jobs))]
    results: list[Published] = []
    pending: list[tuple[Published, dict[str, Any]]] = []
    for origin, detail in zip(names, jobs, strict=True):
        result = Published(origin, detail.get("jobId") if isinstance(detail, dict) else None)
        results.append(result)
        error = validation_error(detail)
        if error:
            result.error, result.outcome = f"invalid job: {error}", "invalid"
            continue
        entry = put_events_entry(detail, event_bus)
        if entry_size(entry) > MAX_REQUEST_BYTES:
            result.error = f"too large: {entry_size(entry)} bytes, PutEvents takes at most {MAX_REQUEST_BYTES}"
            result.outcome = "invalid"
            continue
        pending.append((result, entry))

    _send([([result], entry) for result, entry in pending], client, max_attempts, base_delay, on_progress, sleep)
    return results


class BatchTooLarge(ValueError):
    """A batch event over the contract's limits (100 jobs, a 256 KiB PutEvents entry); the message is one
    line: what, and how to fix it."""


def batch_entry(detail: dict[str, Any], event_bus: str | None = None) -> dict[str, Any]:
    """The PutEvents entry of a `video.job.batch.submitted` event."""
    return put_events_entry(detail, event_bus, batch_contract.SOURCE, batch_contract.BATCH_DETAIL_TYPE)


def check_batch(detail: Any, origin: str) -> None:
    """Refuse a batch event the router would reject whole (invalid_batch:...), before it is sent."""
    problem = batch_contract.malformed(detail)
    if problem is not None:
        code, why = problem
        fix = {batch_contract.TOO_MANY_JOBS: "split it, or give its jobs to publish --batch, which packs them",
               batch_contract.TOO_LARGE: "split it, or give its jobs to publish --batch, which packs them by size",
               }.get(code, "see docs/EVENT_SCHEMA.md, video.job.batch.submitted")
        raise BatchTooLarge(f"{origin}: batch refused, {code}: {why} ({fix})")


def pack(details: list[Any], batch_id: Callable[[int], str], max_jobs: int = batch_contract.MAX_BATCH_JOBS,
         max_bytes: int = batch_contract.MAX_ENTRY_BYTES) -> list[list[int]]:
    """The jobs' indexes grouped into batch events, in order: at most `max_jobs` a batch and each event's
    PutEvents entry at most `max_bytes` (the sizes as json.dumps writes them, exactly as sent)."""
    groups: list[list[int]] = []
    size = 0
    for index, detail in enumerate(details):
        job_bytes = len(json.dumps(detail).encode("utf-8", "surrogatepass"))
        if groups and len(groups[-1]) < max_jobs and size + 2 + job_bytes <= max_bytes:  # ", " then the job
            groups[-1].append(index)
            size += 2 + job_bytes
            continue
        empty = batch_contract.entry_bytes({"batchId": batch_id(len(groups)), "jobs": []})
        if empty + job_bytes > max_bytes:
            raise BatchTooLarge(f"job[{index}]: {empty + job_bytes:,} bytes in a batch of its own, over the "
                                f"{max_bytes:,} bytes of a PutEvents entry (send it without --batch)")
        groups.append([index])
        size = empty + job_bytes
    return groups


def publish_batches(jobs: Iterable[Any], client: Any, event_bus: str | None = None, max_attempts: int = 5,
                    base_delay: float = 0.2, origins: Iterable[str] | None = None,
                    on_progress: Callable[[int], None] | None = None, batch_prefix: str | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> list[Published]:
    """As publish_jobs, but the valid jobs go packed into `video.job.batch.submitted` events (100 jobs and
    256 KiB at most each, see pack), 10 events a PutEvents call; each job's result names its batchId and
    the event id of its batch. Invalid jobs are reported and left out, as publish_jobs does."""
    jobs = list(jobs)
    names = list(origins) if origins is not None else [f"job[{i}]" for i in range(len(jobs))]
    results: list[Published] = []
    valid: list[tuple[Published, Any]] = []
    for origin, detail in zip(names, jobs, strict=True):
        result = Published(origin, detail.get("jobId") if isinstance(detail, dict) else None)
        results.append(result)
        error = validation_error(detail)
        if error:
            result.error, result.outcome = f"invalid job: {error}", "invalid"
        else:
            valid.append((result, detail))
    prefix = batch_prefix or f"batch-{uuid.uuid4()}"

    def name(n: int) -> str:
        return f"{prefix}-{n + 1}"

    pending: list[_Pending] = []
    for n, group in enumerate(pack([detail for _, detail in valid], name)):
        members = [valid[i][0] for i in group]
        for result in members:
            result.batchId = name(n)
        pending.append((members, batch_entry({"batchId": name(n), "jobs": [valid[i][1] for i in group]}, event_bus)))
    _send(pending, client, max_attempts, base_delay, on_progress, sleep)
    return results


def is_batch_event(detail_type: str, detail: Any) -> bool:
    """A `video.job.batch.submitted` event, or a bare detail shaped as one ({batchId, jobs}, no jobId)."""
    return detail_type == batch_contract.BATCH_DETAIL_TYPE or (
        isinstance(detail, dict) and "jobs" in detail and "batchId" in detail and "jobId" not in detail)


def publish_batch_events(batches: Iterable[Any], client: Any, event_bus: str | None = None, max_attempts: int = 5,
                         base_delay: float = 0.2, origins: Iterable[str] | None = None,
                         sleep: Callable[[float], None] = time.sleep) -> list[Published]:
    """Send batch events as they are, one result per batch; one the router would reject whole (over 100
    jobs or 256 KiB, no batchId, ...) is refused with a one-line error and not sent. Its jobs are the
    router's to decide, one by one."""
    batches = list(batches)
    names = list(origins) if origins is not None else [f"batch[{i}]" for i in range(len(batches))]
    results: list[Published] = []
    pending: list[_Pending] = []
    for origin, detail in zip(names, batches, strict=True):
        batch_id = detail.get("batchId") if isinstance(detail, dict) else None
        result = Published(origin, None, batchId=batch_id if isinstance(batch_id, str) else None)
        results.append(result)
        try:
            check_batch(detail, origin)
        except BatchTooLarge as exc:
            result.error, result.outcome = str(exc).removeprefix(f"{origin}: "), "invalid"
            continue
        pending.append(([result], batch_entry(detail, event_bus)))
    _send(pending, client, max_attempts, base_delay, None, sleep)
    return results


def _send(pending: list[tuple[list[Published], dict[str, Any]]], client: Any, max_attempts: int, base_delay: float,
          on_progress: Callable[[int], None] | None, sleep: Callable[[float], None]) -> None:
    """PutEvents by 10 entries and 256 KB, failed entries alone retried with backoff; each entry carries
    one job, or a batch of them (publish_batches), whose results it sets."""
    from botocore.exceptions import BotoCoreError, ClientError

    unreachable: str | None = None
    for batch in _batches(pending):
        attempt = 0
        while batch:
            attempt += 1
            if unreachable is not None:
                for group, _ in batch:
                    for result in group:
                        result.error = unreachable
                break
            try:
                response = client.put_events(Entries=[entry for _, entry in batch])
                answers = response["Entries"]
            except BotoCoreError as exc:  # no answer at all: nothing further can go out either
                unreachable = f"not sent: {exc}"
                continue
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code not in RETRYABLE_CALL_ERRORS or attempt >= max_attempts:
                    for group, _ in batch:
                        for result in group:
                            result.error = f"{code}: {exc.response['Error'].get('Message', '')}"
                    break
                answers = [{"ErrorCode": code, "ErrorMessage": str(exc)}] * len(batch)
            retry = []
            for (group, entry), answer in zip(batch, answers, strict=True):
                if answer.get("EventId"):
                    for result in group:
                        result.eventId, result.error, result.outcome = answer["EventId"], None, "sent"
                    if on_progress:
                        on_progress(len(group))
                elif attempt < max_attempts:
                    retry.append((group, entry))
                else:
                    for result in group:
                        result.error = (f"{answer.get('ErrorCode')}: {answer.get('ErrorMessage')} after {attempt} "
                                        "attempts")
                    if on_progress:
                        on_progress(len(group))
            batch = retry
            if batch:  # exponential backoff with full jitter, as the AWS SDKs do
                sleep(random.uniform(0, base_delay * 2 ** (attempt - 1)))
