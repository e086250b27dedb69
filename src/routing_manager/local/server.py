"""`routing-manager local up`: the local stack behind a moto server on a local port."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from routing_manager.local import moto_adapters, stack


def start(host: str = "127.0.0.1", port: int = 5000, routing_table: Path | None = None,
          echo_logs: Callable[[str], None] | None = None) -> tuple[object, stack.LocalStack]:
    """Start a moto server in this process and deploy the stack into it. The functions' processes and
    every client reach it on that port; `routing_table` replaces the bundled one (ROUTING_TABLE_PATH)."""
    from moto.core.config import default_user_config

    from routing_manager.local import console

    # The interpreter's own AWS calls go to the moto server on this port (moto.settings reads MOTO_PORT).
    os.environ["MOTO_PORT"] = str(port)
    for key, value in {"AWS_DEFAULT_REGION": stack.REGION, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(key, value)
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    server = console.server(ip_address=host, port=port, verbose=False)  # moto, and /console on the same port
    server.start()
    endpoint = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    try:
        deployed = stack.deploy(endpoint_url=endpoint, echo_logs=echo_logs, function_environment={
            "ROUTING_TABLE_PATH": str(routing_table.resolve())} if routing_table else None)
    except Exception:
        server.stop()
        raise
    console.attach(endpoint, deployed.name)
    return server, deployed


def exit_anyway_after(seconds: float, code: int, why: str) -> None:
    """Ctrl-C or SIGTERM must end the process: the interrupt may land while the main thread holds a lock
    that the clean-up needs (moto's, an environment pool's). Past `seconds`, say so and exit."""
    def exit_now() -> None:
        sys.stderr.write(f"error: {why} (exited without it)\n")
        sys.stderr.flush()
        os._exit(code)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()


def serve(host: str, port: int, announce: Callable[[str], None], routing_table: Path | None = None,
          echo_logs: Callable[[str], None] | None = None) -> None:
    server, deployed = start(host, port, routing_table, echo_logs)
    alarms = moto_adapters.AlarmEvaluator(stack.ACCOUNT, stack.REGION)
    announce(json.dumps({
        "endpoint": deployed.endpoint_url, "region": stack.REGION, "stack": stack.STACK_NAME,
        "outputs": deployed.outputs, "eventTapQueueUrl": deployed.tap_queue_url,
        "consoleUrl": f"{deployed.endpoint_url}/console",
    }))
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    exit_anyway_after(15.0, 0, "local up: stopping the stack took over 15 s")
    alarms.stop()
    stack.release(deployed)  # every function's process ends with the stack
    server.stop()  # type: ignore[attr-defined]
