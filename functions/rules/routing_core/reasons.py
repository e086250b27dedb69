"""Rejection reason codes: the vocabulary of `video.job.rejected` and `rejectionReason`.

Plain Python (no pydantic) because the rules Lambda imports it at cold start.
Business rejections are final; operational failures are recorded FAILED and replayable.
"""

from __future__ import annotations

NO_ROUTE = "no_route"
INVALID_LENGTH_RANGE = "invalid_length:must_be_1-300_seconds"
INVALID_LENGTH_NAN = "invalid_length:not_a_number"
MISSING_FIELD_PREFIX = "missing_required_field:"
UNSUPPORTED_PROVIDER_PREFIX = "unsupported_provider:"
QUEUE_NOT_CONFIGURED_PREFIX = "queue_not_configured:"
# Operational (written by the workflow, never by the engine): replayable.
QUEUE_ERROR_PREFIX = "queue_error:"
RULE_ERROR_PREFIX = "rule_error:"
STATE_ERROR_PREFIX = "state_error:"

REQUIRED_FIELDS = ("jobId", "userId", "prompt")
MIN_LENGTH_SEC = 1
MAX_LENGTH_SEC = 300

# Every code a consumer can see, with what it means and whether replay can fix it;
# a test checks docs/EVENT_SCHEMA.md documents each one.
REASON_CODES: dict[str, tuple[str, bool]] = {
    NO_ROUTE: ("no rule matched the job and no provider was requested", False),
    "missing_required_field:{field}": (
        "jobId, userId or prompt is absent, null, not a string or blank",
        False,
    ),
    INVALID_LENGTH_NAN: ("lengthSec is present but not a JSON number (a string, a boolean, NaN)", False),
    INVALID_LENGTH_RANGE: ("lengthSec is a number outside 1..300 (inclusive), infinities included", False),
    "unsupported_provider:{provider}": ("the requested provider is unknown or disabled", False),
    "queue_not_configured:{provider}": ("the provider has no queue URL configured in this deployment", False),
    "queue_error:{error}": ("SendMessage to the provider queue failed (operational, replayable)", True),
    "rule_error:{error}": ("the rules Lambda failed after its retries (operational, replayable)", True),
    "state_error:{error}": ("a Jobs table write failed after its retries (operational, replayable)", True),
}


def is_retryable(reason: str) -> bool:
    """Operational failures are replayable; business rejections are final."""
    return reason.startswith((QUEUE_ERROR_PREFIX, RULE_ERROR_PREFIX, STATE_ERROR_PREFIX))
