"""Rejection reason codes: the vocabulary of `video.job.rejected` and `rejectionReason`.

Plain Python (no pydantic) because the rules Lambda imports it at cold start.
Business rejections are final; operational failures are recorded FAILED and replayable.
"""

from __future__ import annotations

NO_ROUTE = "no_route"
INSUFFICIENT_CREDITS = "insufficient_credits"
OVER_TIER_LIMIT = "over_tier_limit"
INVALID_ROUTING = "invalid_routing"
PREFERENCES_UNSATISFIABLE = "preferences_unsatisfiable"
OVER_MAX_PRICE = "over_max_price"
INVALID_LENGTH_RANGE = "invalid_length:must_be_1-300_seconds"
INVALID_LENGTH_NAN = "invalid_length:not_a_number"
MISSING_FIELD_PREFIX = "missing_required_field:"
UNSUPPORTED_PROVIDER_PREFIX = "unsupported_provider:"
QUEUE_NOT_CONFIGURED_PREFIX = "queue_not_configured:"
# No candidate may take the job now (kill switch, open breaker, saturated queue): recorded FAILED, replayable.
PROVIDER_UNAVAILABLE_PREFIX = "provider_unavailable:"
NO_AVAILABLE_PROVIDER = "no_available_provider"
REGION_UNAVAILABLE = "region_unavailable"  # every provider region the job allows is out (issue 26)
RATE_LIMITED = "rate_limited"  # every candidate that fits is at its rate limit this minute (routing_core.rate_limits)
# Operational (written by the workflow, never by the engine): replayable.
QUEUE_ERROR_PREFIX = "queue_error:"
RULE_ERROR_PREFIX = "rule_error:"
STATE_ERROR_PREFIX = "state_error:"

# Limits of the contract (docs/EVENT_SCHEMA.md). Far below AWS's own (256 KiB per state payload, SQS
# message and EventBridge entry; 2,048 bytes per DynamoDB partition key): a job within them fits every
# payload of the workflow with room to spare, whatever JSON escaping does to it.
MAX_DETAIL_BYTES = 32 * 1024  # the detail as compact UTF-8 JSON
MAX_DETAIL_DEPTH = 32  # the detail object itself is level 1
MAX_JOB_ID_BYTES = 512  # UTF-8
JOB_TOO_LARGE = "job_too_large"
JOB_TOO_DEEP = "job_too_deep"
INVALID_ENCODING = "invalid_encoding"
# Rejections of a jobId that cannot be a key: announced with jobId null, never recorded.
INVALID_JOB_ID_PREFIX = "invalid_job_id:"
JOB_ID_TOO_LONG = INVALID_JOB_ID_PREFIX + "too_long"
JOB_ID_NOT_UNICODE = INVALID_JOB_ID_PREFIX + "not_unicode"
# A `video.job.batch.submitted` whose shape is wrong, rejected whole (routing_core.batch); its jobs are not decided.
INVALID_BATCH_PREFIX = "invalid_batch:"

REQUIRED_FIELDS = ("jobId", "userId", "prompt")
MIN_LENGTH_SEC = 1
MAX_LENGTH_SEC = 300

# Every code a consumer can see, with what it means and whether replay can fix it;
# a test checks docs/EVENT_SCHEMA.md documents each one.
REASON_CODES: dict[str, tuple[str, bool]] = {
    NO_ROUTE: ("no rule matched the job and no provider was requested", False),
    INSUFFICIENT_CREDITS: ("the chosen model's quote, in credits (the table's creditsPerUsd), is over the user's "
                           "balance, and the user's tier is not exempt", False),
    OVER_TIER_LIMIT: ("every candidate that could take the job quotes over the user's tier's maxQuoteUsd", False),
    INVALID_ROUTING: ("the job's routing, consent or metadata is malformed (an unknown field, an unknown provider or "
                      "model, maxPriceUsd <= 0, a sort outside the enum), or names both provider and routing; the "
                      "explanation names the field", False),
    PREFERENCES_UNSATISFIABLE: ("the job's own preferences (order without fallbacks, only, ignore, consent, regions, "
                                "residency) dropped every candidate, or its residency is not this router's region; "
                                "the explanation names the filter that dropped each", False),
    OVER_MAX_PRICE: ("candidates could take the job, but each quotes over the job's routing.maxPriceUsd; the "
                     "rejection's quoteUsd is the cheapest quote", False),
    "missing_required_field:{field}": (
        "jobId, userId or prompt is absent, null, not a string or blank",
        False,
    ),
    JOB_ID_TOO_LONG: (f"jobId is over {MAX_JOB_ID_BYTES} bytes (UTF-8): announced with jobId null, not recorded",
                      False),
    JOB_ID_NOT_UNICODE: ("jobId holds a lone surrogate (not valid Unicode): announced with jobId null, not recorded",
                         False),
    JOB_TOO_LARGE: (f"the detail is over {MAX_DETAIL_BYTES:,} bytes as compact UTF-8 JSON", False),
    JOB_TOO_DEEP: (f"the detail nests objects or arrays over {MAX_DETAIL_DEPTH} levels deep", False),
    INVALID_ENCODING: ("a string in the detail holds a lone surrogate (not valid Unicode)", False),
    INVALID_LENGTH_NAN: ("lengthSec is present but not a JSON number (a string, a boolean, NaN)", False),
    INVALID_LENGTH_RANGE: ("lengthSec is a number outside 1..300 (inclusive), infinities included", False),
    "invalid_batch:{problem}": ("a batch event is malformed as a whole (not an object, no batchId, jobs not a list, "
                                "empty, over 100 jobs or over 256 KiB): rejected whole, no job decided",
                                False),
    "unsupported_provider:{provider}": ("the requested provider is unknown or disabled", False),
    "queue_not_configured:{provider}": ("the provider has no queue URL configured in this deployment", False),
    "provider_unavailable:{provider}": (
        "the requested provider is disabled, its breaker open or its queue saturated, and the job is strict to it: "
        "recorded FAILED, nothing enqueued; replay once it is back", True),
    NO_AVAILABLE_PROVIDER: ("a rule matched but none of its candidates is available now: recorded FAILED, nothing "
                            "enqueued; replay once one is back", True),
    REGION_UNAVAILABLE: ("a candidate serves from regions the job allows, but each of them is out now (disabled, its "
                         "breaker open or its queue saturated in that region): recorded FAILED, nothing enqueued; "
                         "replay once one is back", True),
    RATE_LIMITED: ("every candidate that could take the job is at its provider's or model's maxJobsPerMinute this "
                   "UTC minute: recorded FAILED, nothing enqueued; replay in the next minute", True),
    "queue_error:{error}": ("SendMessage to the provider queue failed (operational, replayable)", True),
    "rule_error:{error}": ("the rules Lambda failed after its retries (operational, replayable)", True),
    "state_error:{error}": ("a Jobs table write failed after its retries (operational, replayable)", True),
}


def is_retryable(reason: str) -> bool:
    """Operational failures are replayable; business rejections are final."""
    return reason in (NO_AVAILABLE_PROVIDER, RATE_LIMITED, REGION_UNAVAILABLE) or reason.startswith(
        (QUEUE_ERROR_PREFIX, RULE_ERROR_PREFIX, STATE_ERROR_PREFIX, PROVIDER_UNAVAILABLE_PREFIX))
