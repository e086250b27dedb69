"""The stack users start: a real `routing-manager local up` process, with boto3, the aws CLI and the
operator CLI as its clients over HTTP. Each module gets a stack of its own (its tests may break it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from routing_manager import project

BIN = Path(sys.executable).parent
AWS_CLI = project.ROOT / ".venv-tools" / "aws" / "bin" / "aws"  # make setup installs it (tools-requirements)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
TERMINAL = {"ROUTED", "REJECTED", "FAILED"}


@dataclass
class LocalUp:
    process: subprocess.Popen[str]
    endpoint: str
    outputs: dict[str, str]
    tap_queue_url: str
    cli_env: dict[str, str] = field(default_factory=dict)  # what the operator's shell sets for the CLI
    _events: list[dict[str, Any]] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The operator CLI, as a user types it against this stack."""
        result = subprocess.run([str(BIN / "routing-manager"), *args, "--endpoint-url", self.endpoint],
                                capture_output=True, text=True, env={**os.environ, **CREDENTIALS, **self.cli_env},
                                timeout=120)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def aws(self, *args: str) -> Any:
        """The aws CLI with --endpoint-url; its JSON answer."""
        result = subprocess.run([str(AWS_CLI), "--endpoint-url", self.endpoint, "--output", "json", *args],
                                capture_output=True, text=True, env={**os.environ, **CREDENTIALS}, timeout=60)
        assert result.returncode == 0, (args, result.stderr)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def submit(self, detail: dict[str, Any]) -> None:
        """`aws events put-events` with the job, as a frontend publishes it."""
        entry = {"Source": "frontend.api", "DetailType": "video.job.submitted", "Detail": json.dumps(detail)}
        answer = self.aws("events", "put-events", "--entries", json.dumps([entry]))
        assert answer["FailedEntryCount"] == 0, answer

    def record(self, job_id: str) -> dict[str, Any] | None:
        item = self.client("dynamodb").get_item(TableName=self.outputs["JobsTableName"], ConsistentRead=True,
                                                Key={"jobId": {"S": job_id}}).get("Item")
        if item is None:
            return None
        from boto3.dynamodb.types import TypeDeserializer

        return {key: TypeDeserializer().deserialize(value) for key, value in item.items()}

    def outcome(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The job's record once it is terminal; the workflow's own timeouts end every job well within."""
        return until(lambda: _terminal(self.record(job_id)), timeout, f"job {job_id} to end")

    def run(self, detail: dict[str, Any]) -> dict[str, Any]:
        self.submit(detail)
        return self.outcome(detail["jobId"])

    def events(self) -> list[dict[str, Any]]:
        """Every routing.manager event so far (the stack's event tap)."""
        sqs = self.client("sqs")
        while batch := sqs.receive_message(QueueUrl=self.tap_queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                self._events.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.tap_queue_url, ReceiptHandle=message["ReceiptHandle"])
        return list(self._events)

    def heartbeat(self) -> tuple[str | None, Any]:
        """`aws lambda invoke` of the heartbeat canary: (FunctionError, payload)."""
        answer = self.client("lambda").invoke(FunctionName=self.outputs["HeartbeatFunctionName"])
        return answer.get("FunctionError"), json.loads(answer["Payload"].read())

    def metric(self, name: str, dimensions: dict[str, str] | None = None, statistic: str = "Sum") -> list[float]:
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        points = self.client("cloudwatch").get_metric_statistics(
            Namespace="VideoJobRouting", MetricName=name, StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(minutes=5), Period=60, Statistics=[statistic],
            Dimensions=[{"Name": k, "Value": v} for k, v in (dimensions or {}).items()])["Datapoints"]
        return [p[statistic] for p in sorted(points, key=lambda p: p["Timestamp"])]


def _terminal(record: dict[str, Any] | None) -> dict[str, Any] | None:
    return record if record and record.get("status") in TERMINAL else None


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Await a condition that the stack makes true; fail, saying what, if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def job(**changes: Any) -> dict[str, Any]:
    detail = {"jobId": f"http-{uuid.uuid4()}", "userId": "user-123", "prompt": "A corgi surfing at sunset",
              "lengthSec": 8, "resolution": "720p", "tier": "standard", "provider": "auto"}
    detail.update(changes)
    return detail


def start_local_up(*args: str, cli_env: dict[str, str] | None = None) -> Iterator[LocalUp]:
    if not AWS_CLI.exists():
        pytest.fail(f"{AWS_CLI} is missing: run `make setup`")
    process = subprocess.Popen([str(BIN / "routing-manager"), "local", "up", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=project.ROOT,
                               env={**os.environ, **CREDENTIALS})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"local up exited with {process.wait()} before it was ready"
        ready = json.loads(line)
        yield LocalUp(process, ready["endpoint"], ready["outputs"], ready["eventTapQueueUrl"], cli_env or {})
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()


@pytest.fixture(scope="module")
def up() -> Iterator[LocalUp]:
    """`local up` with the shipped routing table."""
    yield from start_local_up()


def tuned_table(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    change(table)
    path = folder / "routing_table.json"
    path.write_text(json.dumps(table))
    return path
