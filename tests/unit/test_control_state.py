"""The control table read by the rules Lambda: fresh, stale or unread, said loudly, never silently."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from routing_core.live import ERROR_LOG_EVERY_SEC, MAX_AGE_SEC, LiveState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Table:
    """A DynamoDB client whose Query fails while `down`."""

    def __init__(self) -> None:
        self.down = False

    def query(self, **_: Any) -> dict[str, Any]:
        if self.down:
            raise ConnectionError("no route to the table")
        return {"Items": [{"pk": {"S": "state"}, "sk": {"S": "fal"}, "disabledReason": {"S": "drill"}}]}


def test_unread_then_fresh_then_stale_with_its_age() -> None:
    clock, table = Clock(), Table()
    table.down = True
    state = LiveState("t", client=table, clock=clock)
    assert state.items() == {}
    assert state.freshness() == {"liveState": "unread", "liveStateAgeSec": None}
    table.down = False
    clock.now += MAX_AGE_SEC
    assert state.items()["fal"]["disabledReason"] == "drill"
    assert state.freshness() == {"liveState": "fresh", "liveStateAgeSec": 0.0}
    table.down = True
    clock.now += 12.3
    assert state.items()["fal"]["disabledReason"] == "drill"  # the last state read is kept...
    assert state.freshness() == {"liveState": "stale", "liveStateAgeSec": 12.3}  # ...and said to be stale
    assert state.take_read_errors() == 2 and state.take_read_errors() == 0


def test_the_error_is_logged_at_the_first_failure_then_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock, table = Clock(), Table()
    table.down = True
    state = LiveState("ProviderState-prod", client=table, clock=clock)
    with caplog.at_level(logging.ERROR, logger="routing_core.live"):
        for _ in range(30):  # a read every 2 s for a minute
            state.items()
            clock.now += MAX_AGE_SEC
        state.items()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and 30 * MAX_AGE_SEC >= ERROR_LOG_EVERY_SEC
    assert "control table ProviderState-prod not read (ConnectionError): deciding with unread provider state" \
        in errors[0]
    assert state.read_errors == 31


def test_the_operators_read_raises_rather_than_showing_every_provider_available() -> None:
    table = Table()
    table.down = True
    with pytest.raises(ConnectionError):
        LiveState("t", client=table, max_age=0, strict=True).items()
