"""Publishing submitted jobs to EventBridge, as a frontend does. Importable:

    from routing_manager.publish import publish_jobs
    results = publish_jobs([detail, ...], client=boto3.client("events"))

Each job is validated against the contract first (an invalid one is reported, never sent),
wrapped in the envelope (source `frontend.api`, detail-type `video.job.submitted`), batched
by PutEvents' limits (10 entries, 256 KB) and its failed entries retried with backoff.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

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

    @property
    def ok(self) -> bool:
        return self.outcome == "sent"


def validation_error(detail: Any, known_models: Mapping[str, frozenset[str]] | None = None) -> str | None:
    """None for a job the contract accepts, else one line naming each bad field. `routing` names providers
    and models: they are checked against `known_models` (provider -> its models), by default the routing
    table the rules function ships with (ROUTING_TABLE_PATH overrides it, as for `explain`)."""
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
        preferences.parse(detail, known_models if known_models is not None else _bundled_models())
    except ValueError as exc:
        return f"{INVALID_ROUTING}: {exc}"
    return None


@functools.cache
def _bundled_models() -> dict[str, frozenset[str]]:
    import os
    from pathlib import Path

    from routing_core.loading import DEFAULT_TABLE, load_table

    table = load_table(Path(os.environ.get("ROUTING_TABLE_PATH") or DEFAULT_TABLE))
    return {name: frozenset(spec.get("prices", {})) for name, spec in table["providers"].items()}


def entry_size(entry: dict[str, Any]) -> int:
    """PutEvents' size of an entry: Source, DetailType, Detail and Resources, UTF-8."""
    return sum(len(str(entry.get(key, "")).encode()) for key in ("Source", "DetailType", "Detail")) + sum(
        len(r.encode()) for r in entry.get("Resources", []))


def _batches(items: list[tuple[Published, dict[str, Any]]]) -> Iterable[list[tuple[Published, dict[str, Any]]]]:
    batch: list[tuple[Published, dict[str, Any]]] = []
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
    from botocore.exceptions import BotoCoreError, ClientError

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

    unreachable: str | None = None
    for batch in _batches(pending):
        attempt = 0
        while batch:
            attempt += 1
            if unreachable is not None:
                for result, _ in batch:
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
                    for result, _ in batch:
                        result.error = f"{code}: {exc.response['Error'].get('Message', '')}"
                    break
                answers = [{"ErrorCode": code, "ErrorMessage": str(exc)}] * len(batch)
            retry = []
            for (result, entry), answer in zip(batch, answers, strict=True):
                if answer.get("EventId"):
                    result.eventId, result.error, result.outcome = answer["EventId"], None, "sent"
                    if on_progress:
                        on_progress(1)
                elif attempt < max_attempts:
                    retry.append((result, entry))
                else:
                    result.error = f"{answer.get('ErrorCode')}: {answer.get('ErrorMessage')} after {attempt} attempts"
                    if on_progress:
                        on_progress(1)
            batch = retry
            if batch:  # exponential backoff with full jitter, as the AWS SDKs do
                sleep(random.uniform(0, base_delay * 2 ** (attempt - 1)))
    return results
