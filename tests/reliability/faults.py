"""Fault injection at moto's backends: the first N matching calls fail, then calls go through."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto.core.exceptions import ServiceException

FAILED_ENTRY = "failed-entry"  # PutEvents answers with a FailedEntry instead of raising


class Fault:
    def __init__(self, match: Callable[[str], bool], errors: list[Any]) -> None:
        self.match = match
        self.errors = list(errors)
        self.hits = 0
        self.lock = threading.Lock()
        self.fired = threading.Event()  # set once the last injected error has been handed out

    def next_error(self, call: str) -> Any:
        if not self.match(call):
            return None
        with self.lock:
            if not self.errors:
                return None
            self.hits += 1
            failure = self.errors.pop(0)
            if not self.errors:
                self.fired.set()
            return failure


def error(code: str, service: str = "dynamodb") -> Exception:
    """An AWS error as the service's own protocol carries it, so Step Functions names it right."""
    if service in ("dynamodb", "events"):  # JSON protocol services
        from moto.core.exceptions import JsonRESTError

        return JsonRESTError(code, f"injected {code}")
    if service == "sqs":
        from moto.sqs.exceptions import SQSException

        return SQSException(code, f"injected {code}")
    return ServiceException(code, f"injected {code}")


def patch(monkeypatch: pytest.MonkeyPatch, target: Any, method: str, fault: Fault) -> Fault:
    """`target.method` (a moto backend's) fails as `fault` says, then goes through, until the test ends."""
    original = getattr(target, method)

    def faulty(self: Any, *args: Any, **kwargs: Any) -> Any:
        failure = fault.next_error(repr((args, kwargs)))
        if failure == FAILED_ENTRY:
            return [{"ErrorCode": "ThrottlingException", "ErrorMessage": "injected"} for _ in args[0]]
        if failure is not None:
            raise failure
        return original(self, *args, **kwargs)

    monkeypatch.setattr(target, method, faulty)
    return fault


@contextlib.contextmanager
def inject(monkeypatch: pytest.MonkeyPatch, target: Any, method: str, fault: Fault) -> Iterator[Fault]:
    yield patch(monkeypatch, target, method, fault)
