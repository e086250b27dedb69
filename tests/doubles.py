"""A stand-in for a deployed function, for the adapters' own tests: a Python handler called in this
process. The local stack never uses it: its functions run as processes (lambda_runtime)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from routing_manager.local.lambda_runtime import Result


@dataclass
class HandlerFunction:
    handler: Callable[[Any], Any]
    name: str = "f"
    faults: list[str | BaseException] = field(default_factory=list)
    invocations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invoke_event(self, event: Any) -> Result:
        try:
            return Result(json.dumps(self.handler(event)).encode())
        except Exception as exc:
            return Result(json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode(),
                          "Unhandled")
