"""Rate limits held across every rules environment (issue 25): `rateLimits.maxJobsPerMinute` on a provider
of the routing table, and per model under `modelRateLimits`.

One counter per scope and UTC minute in the control table, `pk = "rate"`, `sk = "<scope>#<minute epoch>"`.
A job is admitted by ONE conditional UpdateItem, `ADD admitted 1` only while `admitted < limit`: DynamoDB
checks the condition and adds in one step per item, so however many environments decide at once, at most
`limit` jobs are admitted in a minute (a fixed window: up to 2 x limit across a minute's edge). A job that
needs two counters (provider and model) takes the provider's first and gives it back if the model's is full.
A counter that cannot be checked admits nothing (the candidate is skipped, as a budget that cannot be
checked is): the limit is a promise to the provider.

Plain Python; boto3 comes with the caller's client (live.LiveState's, loaded at the first read).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

RATE_PK = "rate"
KEEP_SEC = 3600  # counters expire (DynamoDB TTL) an hour after their minute
logger = logging.getLogger(__name__)


class Limiter:
    def __init__(self, client: Callable[[], Any], table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self.table_name = table_name
        self._clock = clock

    def admit(self, scopes: list[tuple[str, int]]) -> str | None:
        """Take one slot of each (scope, jobs per minute); None when admitted, else why not (nothing taken)."""
        minute = int(self._clock() // 60 * 60)
        taken: list[str] = []
        for scope, limit in scopes:
            why = self._take(scope, limit, minute)
            if why is not None:
                for done in taken:
                    self._give_back(done, minute)
                return why
            taken.append(scope)
        return None

    def _key(self, scope: str, minute: int) -> dict[str, Any]:
        return {"pk": {"S": RATE_PK}, "sk": {"S": f"{scope}#{minute}"}}

    def _take(self, scope: str, limit: int, minute: int) -> str | None:
        try:
            self._client().update_item(
                TableName=self.table_name, Key=self._key(scope, minute),
                UpdateExpression="ADD admitted :one SET expiresAt = if_not_exists(expiresAt, :expires)",
                ConditionExpression="attribute_not_exists(admitted) OR admitted < :limit",
                ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limit)},
                                           ":expires": {"N": str(minute + 60 + KEEP_SEC)}})
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "ConditionalCheckFailedException":
                return f"rate limited: {limit} jobs a minute admitted to {scope.replace('#', '/')}"
            logger.warning("rate limit not checked: %s", type(exc).__name__)
            return "rate limited: the counter could not be checked"
        return None

    def _give_back(self, scope: str, minute: int) -> None:
        try:
            self._client().update_item(TableName=self.table_name, Key=self._key(scope, minute),
                                       UpdateExpression="ADD admitted :minus",
                                       ExpressionAttributeValues={":minus": {"N": "-1"}})
        except Exception as exc:  # the slot stays taken: fewer jobs admitted, never more
            logger.warning("rate limit slot not given back: %s", type(exc).__name__)


LIMITER: Limiter | None = None  # set by the rules function (app.py); none: limits are not enforced (explain)


def configure(limiter: Limiter | None) -> None:
    global LIMITER
    LIMITER = limiter
