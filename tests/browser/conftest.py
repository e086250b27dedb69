"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`: `make setup` installs them), driven
through chromedriver's W3C WebDriver HTTP API with urllib: no Python browser library to pin."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routing_manager import project
from tests.local_up.conftest import LocalUp, start_local_up

SCREENSHOTS = project.ROOT / ".local" / "console"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


class Browser:
    """One WebDriver session: just the commands these tests use."""

    def __init__(self, driver_url: str, session: str) -> None:
        self.base = f"{driver_url}/session/{session}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return _request(method, self.base + path, body)

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        element: str = self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]
        return element

    def find_all(self, css: str) -> list[str]:
        return [e[ELEMENT] for e in self._call("POST", "/elements", {"using": "css selector", "value": css})]

    def text(self, element: str) -> str:
        value: str = self._call("GET", f"/element/{element}/text")
        return value

    def attribute(self, element: str, name: str) -> str | None:
        value: str | None = self._call("GET", f"/element/{element}/attribute/{name}")
        return value

    def click(self, element: str) -> None:
        self._call("POST", f"/element/{element}/click", {})

    def run(self, script: str, *args: Any) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["value"]
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"WebDriver {method} {url}: {exc.read().decode()[:500]}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make setup installs them as root: "
                    "apt-get install chromium chromium-driver); the console's HTTP tests still run")
    port = _free_port()
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if _request("GET", f"{url}/status").get("ready"):
                    break
            except (OSError, AssertionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("chromedriver did not become ready in 20 s")
            time.sleep(0.05)
        session = _request("POST", f"{url}/session", {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000"]}}}})["sessionId"]
        try:
            yield Browser(url, session)
        finally:
            _request("DELETE", f"{url}/session/{session}")
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def up() -> Iterator[LocalUp]:
    yield from start_local_up()
