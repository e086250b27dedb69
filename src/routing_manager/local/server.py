"""`routing-manager local up`: the local stack behind a moto server on a local port."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable

from routing_manager.local import stack


def start(host: str = "127.0.0.1", port: int = 5000) -> tuple[object, stack.LocalStack]:
    """Start a moto server in this process and deploy the stack into it."""
    from moto.core.config import default_user_config
    from moto.server import ThreadedMotoServer

    # The interpreter's own AWS calls go to the moto server on this port (moto.settings reads MOTO_PORT).
    os.environ["MOTO_PORT"] = str(port)
    for key, value in {"AWS_DEFAULT_REGION": stack.REGION, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        os.environ.setdefault(key, value)
    default_user_config["stepfunctions"]["execute_state_machine"] = True
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    endpoint = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    try:
        deployed = stack.deploy(endpoint_url=endpoint)
    except Exception:
        server.stop()
        raise
    return server, deployed


def serve(host: str, port: int, announce: Callable[[str], None]) -> None:
    server, deployed = start(host, port)
    announce(json.dumps({
        "endpoint": deployed.endpoint_url, "region": stack.REGION, "stack": stack.STACK_NAME,
        "outputs": deployed.outputs, "eventTapQueueUrl": deployed.tap_queue_url,
    }))
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    server.stop()  # type: ignore[attr-defined]
