"""`routing-manager local up`: the local stack behind a moto server on a local port."""

from __future__ import annotations

import faulthandler
import json
import os
import select
import signal
import socket
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


def wait_for_stop_signal() -> Callable[[], None]:
    """Catch SIGINT and SIGTERM now; the returned call blocks until one arrives. The kernel may hand a
    process's signal to any of its threads, and then a main thread asleep on a lock never wakes to run the
    Python handler (a rare hang at `kill`). The C handler writes to a wakeup fd from whichever thread it
    ran on, and select() on that fd always wakes."""
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)  # caught, so the wakeup fd sees it; the fd says which

    def wait() -> None:
        select.select([wake_read], [], [])
        signal.set_wakeup_fd(-1)
        wake_read.close()
        wake_write.close()
    return wait


def serve(host: str, port: int, announce: Callable[[str], None], routing_table: Path | None = None,
          echo_logs: Callable[[str], None] | None = None) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` prints every thread's stack
    server, deployed = start(host, port, routing_table, echo_logs)
    alarms = moto_adapters.AlarmEvaluator(stack.ACCOUNT, stack.REGION)
    wait = wait_for_stop_signal()  # before the ready line: a client may stop us the moment it reads it
    announce(json.dumps({
        "endpoint": deployed.endpoint_url, "region": stack.REGION, "stack": stack.STACK_NAME,
        "outputs": deployed.outputs, "eventTapQueueUrl": deployed.tap_queue_url,
        "consoleUrl": f"{deployed.endpoint_url}/console",
    }))
    wait()
    exit_anyway_after(15.0, 0, "local up: stopping the stack took over 15 s")
    alarms.stop()
    stack.release(deployed)  # every function's process ends with the stack
    server.stop()  # type: ignore[attr-defined]
