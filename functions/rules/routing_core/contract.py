"""The event contract, one source of truth: pydantic models for what goes in and out.

The JSON Schemas in events/schemas/ are generated from these models
(`routing-manager schemas --write`); a test fails when they drift. The rules Lambda
does not import this module (cold start): its engine applies the same rules by hand,
and a property test checks the two agree.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator, model_validator

from routing_core import batch, limits, preferences, reasons

SUBMITTED_SOURCE = "frontend.api"
SUBMITTED_DETAIL_TYPE = "video.job.submitted"
ROUTER_SOURCE = "routing.manager"
ROUTED_DETAIL_TYPE = "video.job.routed"
REJECTED_DETAIL_TYPE = "video.job.rejected"
ROUTED_BY = "RoutingManager"
FAILED_DETAIL_TYPE = "video.job.failed"
COMPLETED_DETAIL_TYPE = "video.job.completed"
PROVIDER_CHANGED_DETAIL_TYPE = "routing.provider.changed"

_NOT_BLANK = r"\S"  # required strings: present and not only white space


class Feature(BaseModel):
    model_config = ConfigDict(extra="allow")
    audio: StrictBool | None = Field(None, description="whether the video needs an audio track")


Selector = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}(/.+)?$")]
RegionName = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")]


class Routing(BaseModel):
    """The job's own preferences for its route (docs/EVENT_SCHEMA.md, "Routing preferences"). Which providers
    and models exist is the routing table's to say: the router (and `publish`) check the names against it."""

    model_config = ConfigDict(extra="forbid")
    order: list[Selector] | None = Field(None, max_length=preferences.MAX_SELECTORS, examples=[["replicate", "fal"]],
                                         description="\"provider\" or \"provider/model\", tried first, in order")
    only: list[Selector] | None = Field(None, max_length=preferences.MAX_SELECTORS,
                                        description="candidates outside it are dropped")
    ignore: list[Selector] | None = Field(None, max_length=preferences.MAX_SELECTORS,
                                          description="these candidates are dropped")
    allowFallbacks: StrictBool | None = Field(None, description="default true; false: only order's candidates (or "
                                                                "the matching rule's first) may take the job")
    sort: Literal["price", "latency", "quality"] | None = Field(
        None, description="among the candidates that order does not name: price, the cheapest quote first; latency, "
                          "the lowest durationEwmaSec first; quality, best-value's sampled quality per dollar")
    maxPriceUsd: float | None = Field(None, gt=0, allow_inf_nan=False,
                                      description="candidates quoting above it are dropped")
    regions: list[RegionName] | None = Field(
        None, min_length=1, max_length=preferences.MAX_SELECTORS, examples=[["eu-west-1", "eu-central-1"]],
        description="provider regions the job may go to (each one some provider of the routing table lists)")
    residency: Literal["eu", "us"] | None = Field(
        None, description="the job stays in the EU or the US: only provider regions there, and only a router "
                          "deployed there (docs/ARCHITECTURE.md)")

    @field_validator("maxPriceUsd", mode="before")
    @classmethod
    def _json_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("must be a JSON number")
        return value

    @model_validator(mode="after")
    def _regions_inside_residency(self) -> Routing:
        if self.regions is not None and self.residency is not None and not any(
                preferences.in_residency(region, self.residency) for region in self.regions):
            raise ValueError(f"routing.regions has no region inside routing.residency {self.residency!r}")
        return self


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consentGiven: StrictBool = Field(description="false: only providers whose dataPolicy neither retains nor trains "
                                                 "on inputs may take the job")


MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=preferences.MAX_METADATA_KEY_CHARS)]
MetadataValue = Annotated[str, StringConstraints(max_length=preferences.MAX_METADATA_VALUE_CHARS)]


class SubmittedJob(BaseModel):
    """Detail of `video.job.submitted` (source `frontend.api`). Unknown fields pass through. At most
    32,768 bytes as compact UTF-8 JSON, objects and arrays nested at most 32 deep, every string valid
    Unicode (no lone surrogates)."""

    model_config = ConfigDict(extra="allow", title="VideoJobSubmitted")

    jobId: str = Field(description=f"idempotency key: one outcome per jobId; at most {reasons.MAX_JOB_ID_BYTES} "
                                   "bytes as UTF-8", min_length=1, max_length=reasons.MAX_JOB_ID_BYTES,
                       pattern=_NOT_BLANK, examples=["550e8400-e29b-41d4-a716-446655440000"])
    userId: str = Field(min_length=1, pattern=_NOT_BLANK, examples=["user-123"])
    prompt: str = Field(description="never logged by the router", min_length=1, pattern=_NOT_BLANK,
                        examples=["A corgi surfing on a beach at sunset"])
    lengthSec: float | None = Field(None, ge=reasons.MIN_LENGTH_SEC, le=reasons.MAX_LENGTH_SEC, examples=[8],
                                    description="a JSON number; a numeric string is rejected")
    resolution: str | None = Field(None, examples=["720p", "1080p"])
    tier: Literal["standard", "premium"] | None = None
    provider: str | None = Field(None, examples=["auto", "fal", "replicate"],
                                 description="auto (default) or a provider of the routing table, any case")
    feature: Feature | None = None
    routing: Routing | None = Field(None, description="the job's route preferences; not with an explicit provider")
    consent: Consent | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        None, max_length=preferences.MAX_METADATA_KEYS, examples=[{"customer": "acme"}],
        description="string values a rule may match on (when.metadata)")

    @model_validator(mode="after")
    def _provider_or_routing(self) -> SubmittedJob:
        if self.routing is not None and self.provider is not None and self.provider.strip().lower() not in ("", "auto"):
            raise ValueError(f"{reasons.INVALID_ROUTING}: provider and routing given: pick one")
        return self

    @model_validator(mode="before")
    @classmethod
    def _within_limits(cls, value: Any) -> Any:
        if isinstance(value, dict):
            _, refused, why = limits.check(value)
            if refused is not None:
                raise ValueError(f"{refused}: {why}")
        return value

    @field_validator("lengthSec", mode="before")
    @classmethod
    def _json_number(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(reasons.INVALID_LENGTH_NAN)
        return value


class BatchSubmitted(BaseModel):
    """Detail of `video.job.batch.submitted` (source `frontend.api`): 1 to 100 jobs in one event, the
    PutEvents entry at most 256 KiB. Each job is a `video.job.submitted` detail and is decided as one:
    an invalid job is rejected alone; a batch malformed as a whole is rejected `invalid_batch:{problem}`."""

    model_config = ConfigDict(extra="allow", title="VideoJobBatchSubmitted")

    batchId: str = Field(min_length=1, max_length=batch.MAX_BATCH_ID_BYTES, pattern=_NOT_BLANK,
                         description="names the batch in its summary event; jobIds stay the idempotency keys",
                         examples=["batch-2025-06-22-001"])
    jobs: list[dict[str, Any]] = Field(min_length=1, max_length=batch.MAX_BATCH_JOBS,
                                       description="video.job.submitted details (events/schemas/"
                                                   "video.job.submitted.schema.json), each decided on its own")

    @model_validator(mode="before")
    @classmethod
    def _within_entry(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("jobs"), list):
            size = batch.entry_bytes(value)
            if size > batch.MAX_ENTRY_BYTES:
                raise ValueError(f"{batch.TOO_LARGE}: {size:,} bytes, a PutEvents entry holds at most "
                                 f"{batch.MAX_ENTRY_BYTES:,}")
        return value


class _Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobId: str
    ts: str = Field(description="ISO 8601 time of the decision", examples=["2025-06-22T00:22:00Z"])


class RoutedDetail(_Outbound):
    """Detail of `video.job.routed` (source `routing.manager`)."""

    model_config = ConfigDict(title="VideoJobRouted")
    provider: str = Field(examples=["fal"])
    model: str = Field(examples=["wan-i2v"])
    queue: str = Field(description="queue name, not URL", examples=["FalJobQueue"])
    quoteUsd: float | None = Field(None, ge=0, description="the model's list price for the job (the routing table's "
                                                          "catalog); additive", examples=[0.64])
    priority: Literal["urgent", "high", "normal", "low"] | None = Field(
        None, description="the user's tier's priority (the routing table's tiers); additive")
    providerRegion: str | None = Field(None, examples=["eu-west-1"], description="the provider region the job was "
                                       "sent to (\"default\": a provider that lists no regions); additive")
    tableVersion: int | None = Field(None, ge=0, description="the routing table version that decided (0: the "
                                                             "bundled one); additive")
    routedBy: Literal["RoutingManager"] = "RoutingManager"


class RejectedDetail(_Outbound):
    """Detail of `video.job.rejected` (source `routing.manager`)."""

    model_config = ConfigDict(title="VideoJobRejected")
    status: Literal["rejected"] = "rejected"
    reason: str = Field(description="a reason code (docs/EVENT_SCHEMA.md)", examples=["no_route"])
    retryable: bool | None = Field(None, description="true for operational failures that replay can fix")
    quoteUsd: float | None = Field(None, ge=0, description="over_max_price: the cheapest quote; additive",
                                   examples=[0.64])
    tableVersion: int | None = Field(None, ge=0, description="the routing table version that decided (0: the "
                                                             "bundled one; null: no table was used); additive")


class _ProviderOutcome(BaseModel):
    model_config = ConfigDict(extra="allow")
    jobId: str = Field(min_length=1, max_length=reasons.MAX_JOB_ID_BYTES)
    provider: str = Field(min_length=1, max_length=64, examples=["fal"])
    model: str = Field(min_length=1, max_length=256, examples=["wan-i2v"])
    providerRegion: str | None = Field(None, max_length=64, examples=["eu-west-1"],
                                       description="the region that ran the job (the message's providerRegion "
                                                   "attribute): its breaker counts there; additive")

    # Statistics are learnt from these figures: "42" or true is an invoker's bug, not a duration.
    @field_validator("durationSec", "costUsd", "qualityScore", mode="before", check_fields=False)
    @classmethod
    def _json_number(cls, value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError("must be a JSON number")
        return value


class JobFailedDetail(_ProviderOutcome):
    """Detail of `video.job.failed`, from a provider invoker (any source but `routing.manager`): feeds the
    provider's circuit breaker. `invalid_input` is the job's fault and never counts against the provider."""

    model_config = ConfigDict(title="VideoJobFailed")
    errorType: Literal["provider_error", "rate_limited", "timeout", "invalid_input"]
    retryAfterSec: float | None = Field(None, gt=0, le=86400, description="rate_limited: the provider's "
                                                                          "Retry-After; opens the breaker that long")
    durationSec: float | None = Field(None, ge=0, le=86400, allow_inf_nan=False, examples=[30.0],
                                      description="the provider's processing time until it failed; additive")


class JobCompletedDetail(_ProviderOutcome):
    """Detail of `video.job.completed`, from a provider invoker (any source but `routing.manager`)."""

    model_config = ConfigDict(title="VideoJobCompleted")
    # Optional since issue 25: an invoker that cannot time the job still reports its outcome.
    durationSec: float | None = Field(None, ge=0, le=86400, allow_inf_nan=False, examples=[42.5],
                                      description="the provider's processing time")
    costUsd: float | None = Field(None, ge=0, le=10000, allow_inf_nan=False, examples=[0.61],
                                  description="what the provider charged for the job; additive")
    qualityScore: float | None = Field(None, ge=0, le=1, allow_inf_nan=False, examples=[0.82],
                                       description="0..1 from any evaluator (an automatic metric or a user "
                                                   "rating); additive")


class BatchRoutedDetail(BaseModel):
    """Detail of `video.job.batch.routed` (source `routing.manager`): what became of a batch's jobs, once
    each was announced on its own (`video.job.routed` / `video.job.rejected`). A malformed batch has
    `reason` set and every count 0."""

    model_config = ConfigDict(extra="forbid", title="VideoJobBatchRouted")
    batchId: str | None = Field(description="null when the batch had none (invalid_batch:missing_batch_id)")
    jobs: int = Field(ge=0, description="jobs in the batch")
    routed: int = Field(ge=0)
    rejected: int = Field(ge=0, description="final rejections, the invalid jobs included")
    unavailable: int = Field(ge=0, description="recorded FAILED, retryable (no provider available now)")
    duplicate: int = Field(ge=0, description="already handled: by an earlier job of the batch or another event")
    failed: int = Field(ge=0, description="operational failures, recorded FAILED and replayable per job")
    unannounced: int = Field(0, ge=0, description="outcome events EventBridge refused 3 times (the jobs are recorded; "
                                                  "the execution fails so that the batch-failures alarm fires)")
    reason: str | None = Field(None, description="invalid_batch:{problem} when the batch was rejected whole")
    why: str | None = Field(None, description="the problem in words, with reason")
    ts: str


class TableChangedDetail(BaseModel):
    """Detail of `routing.table.changed` (source `routing.manager`): every change of which routing table
    version decides (docs/ROUTING_TABLES.md)."""

    model_config = ConfigDict(extra="forbid", title="RoutingTableChanged")
    version: int = Field(ge=0, description="the version the change is about (0: the bundled table)")
    mode: Literal["published", "shadow", "canary", "promoted", "rolled_back", "canary_ended"]
    percent: float | None = Field(None, description="canary: its share of jobs; promoted: 100")
    by: str = Field(description="caller ARN, or alarm (an alarm-gated rollback)")
    reason: str | None = None
    ts: str


class ProviderChangedDetail(BaseModel):
    """Detail of `routing.provider.changed` (source `routing.manager`): every change of a provider's state,
    by an operator (kill switch), the circuit breaker or the queue-age alarm."""

    model_config = ConfigDict(extra="forbid", title="RoutingProviderChanged")
    provider: str
    model: str | None = Field(description="null: the whole provider")
    providerRegion: str | None = Field(None, description="null: in every region of the provider")
    state: Literal["available", "disabled", "open", "half_open", "saturated"]
    change: str = Field(examples=["disabled", "enabled", "breaker_opened", "breaker_closed", "probe_failed",
                                  "saturated", "unsaturated"])
    reason: str | None = None
    until: str | None = Field(None, description="ISO 8601: when a timed disable or an open breaker ends")
    by: str = Field(description="caller ARN (kill switch), circuit-breaker or queue-age-alarm")
    ts: str


class JobRecord(BaseModel):
    """The item the router writes in `Jobs-{Stage}` (other agents may own other attributes)."""

    model_config = ConfigDict(extra="allow", title="JobsTableRecord")
    jobId: str
    status: Literal["CLAIMED", "ROUTED", "REJECTED", "FAILED"]
    claimedBy: str | None = Field(None, description="execution ARN holding the claim")
    claimedAt: str | None = None
    batchId: str | None = Field(None, description="the video.job.batch.submitted event the job came in, if any")
    provider: str | None = None
    model: str | None = None
    queue: str | None = None
    providerRegion: str | None = Field(None, description="routed: the provider region (\"default\": a provider "
                                                         "that lists no regions)")
    messageId: str | None = Field(None, description="SQS MessageId of the job in the provider queue")
    quoteUsd: float | None = Field(None, ge=0, description="routed: the model's list price for the job")
    priority: Literal["urgent", "high", "normal", "low"] | None = Field(None, description="routed: the tier's priority")
    routedAt: str | None = None
    routedBy: Literal["RoutingManager"] | None = None
    rejectionReason: str | None = None
    rejectedAt: str | None = None
    failureReason: str | None = None
    failedAt: str | None = None
    emitError: str | None = Field(None, description="why the outcome event could not be published; the outcome "
                                                    "itself is recorded in status")
    submittedDetail: str | None = Field(None, description="the submitted job's detail (JSON), kept from the claim on "
                                                          "so that a failed or abandoned job can be replayed")
    attempts: int | None = Field(None, description="claims taken, replays included")
    executions: list[str] | None = Field(None, description="every execution that claimed the job, first to last: "
                                                        "its replay history (job show)")
    tableVersion: int | None = Field(None, description="routed or rejected: the routing table version that decided "
                                                      "(0: the bundled one; docs/ROUTING_TABLES.md)")
    shadow: dict[str, Any] | None = Field(None, description="while a table runs in shadow: what it would have "
                                                            "decided ({version, outcome, provider, model, reason})")


SCHEMAS: dict[str, type[BaseModel]] = {
    "video.job.submitted": SubmittedJob,
    "video.job.batch.submitted": BatchSubmitted,
    "video.job.batch.routed": BatchRoutedDetail,
    "video.job.routed": RoutedDetail,
    "video.job.rejected": RejectedDetail,
    "video.job.failed": JobFailedDetail,
    "video.job.completed": JobCompletedDetail,
    "routing.provider.changed": ProviderChangedDetail,
    "routing.table.changed": TableChangedDetail,
    "jobs-table-record": JobRecord,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema() for name, model in SCHEMAS.items()}
