"""`routing-manager local up` as a user runs it: a ready line, real clients, a clean exit."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from routing_manager import project

pytestmark = pytest.mark.local_stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_local_up_serves_real_clients_and_exits_0_on_sigterm() -> None:
    port = _free_port()
    cli = Path(sys.executable).parent / "routing-manager"
    proc = subprocess.Popen([str(cli), "local", "up", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=project.ROOT)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert set(ready) == {"endpoint", "region", "stack", "outputs", "eventTapQueueUrl", "consoleUrl"}
        assert ready["endpoint"] == f"http://127.0.0.1:{port}"
        assert ready["consoleUrl"] == f"http://127.0.0.1:{port}/console"
        outputs = ready["outputs"]
        assert {"RoutingStateMachineArn", "JobsTableName", "FalJobQueueUrl", "ReplicateJobQueueUrl",
                "RoutingFailureQueueUrl"} <= set(outputs)

        kwargs = {"endpoint_url": ready["endpoint"], "region_name": ready["region"],
                  "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        detail = {"jobId": f"up-{os.getpid()}", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}
        boto3.client("events", **kwargs).put_events(Entries=[{
            "Source": "frontend.api", "DetailType": "video.job.submitted", "Detail": json.dumps(detail)}])
        sqs = boto3.client("sqs", **kwargs)
        deadline = time.monotonic() + 30
        messages: list = []  # type: ignore[type-arg]
        while not messages and time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=outputs["FalJobQueueUrl"], MessageAttributeNames=["All"],
                                           WaitTimeSeconds=1).get("Messages", [])
        assert messages and messages[0]["MessageAttributes"]["jobId"]["StringValue"] == detail["jobId"]
        tap = sqs.receive_message(QueueUrl=ready["eventTapQueueUrl"], WaitTimeSeconds=2).get("Messages", [])
        assert tap and json.loads(tap[0]["Body"])["detail-type"] == "video.job.routed"
        sqs.delete_message(QueueUrl=ready["eventTapQueueUrl"], ReceiptHandle=tap[0]["ReceiptHandle"])
        # A jobId that cannot be a key ends the same way over HTTP as in process: rejected, announced.
        boto3.client("events", **kwargs).put_events(Entries=[{
            "Source": "frontend.api", "DetailType": "video.job.submitted",
            "Detail": json.dumps({**detail, "jobId": "lone-\ud800"})}])
        rejected: list = []  # type: ignore[type-arg]
        while not rejected and time.monotonic() < deadline + 30:
            rejected = sqs.receive_message(QueueUrl=ready["eventTapQueueUrl"], WaitTimeSeconds=1).get("Messages", [])
        event = json.loads(rejected[0]["Body"])
        assert (event["detail-type"], event["detail"]["reason"], event["detail"]["jobId"]) == (
            "video.job.rejected", "invalid_job_id:not_unicode", None)
        item = boto3.client("dynamodb", **kwargs).get_item(TableName=outputs["JobsTableName"],
                                                           Key={"jobId": {"S": detail["jobId"]}})["Item"]
        assert item["status"]["S"] == "ROUTED"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_the_provider_commands_work_against_local_up() -> None:
    """The kill switch and a queue-age alarm over HTTP, as an operator drills them on the local stack."""
    port = _free_port()
    cli = Path(sys.executable).parent / "routing-manager"
    proc = subprocess.Popen([str(cli), "local", "up", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=project.ROOT)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1"}

    def provider(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cli), "provider", *args, "--endpoint-url", f"http://127.0.0.1:{port}"],
                              capture_output=True, text=True, timeout=60, env=env, cwd=project.ROOT)

    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        disabled = provider("disable", "fal", "--reason", "drill", "--for", "10m")
        assert disabled.returncode == 0, disabled.stderr
        assert disabled.stdout.startswith("fal disabled until ")
        boto3.client("cloudwatch", endpoint_url=ready["endpoint"], region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").set_alarm_state(
            AlarmName=f"{ready['stack']}-saturated-replicate", StateValue="ALARM", StateReason="drill")
        status = provider("status", "--json")
        assert status.returncode == 0, status.stderr
        states = {(line["provider"], line["model"]): (line["state"], line["reason"])
                  for line in map(json.loads, status.stdout.splitlines()) if line["providerRegion"] is None}
        assert states[("fal", None)] == ("disabled", "drill")
        assert states[("replicate", None)][0] == "saturated"
        assert provider("enable", "fal").returncode == 0
        unknown = provider("disable", "runway", "--reason", "x")
        assert unknown.returncode == 2 and "unknown provider 'runway'" in unknown.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def _up(*args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "routing-manager"
    return subprocess.run([str(cli), "local", "up", *args], capture_output=True, text=True, timeout=60,
                          cwd=project.ROOT)


def test_local_up_refuses_an_address_it_cannot_use_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = _up("--port", str(taken))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{taken}: Address already in use"
    unreachable = _up("--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: not an address of this machine
    assert unreachable.returncode == 2 and "cannot listen on 192.0.2.1:0" in unreachable.stderr
    for bad in ("-1", "70000"):
        refused = _up("--port", bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr and "--port" in refused.stderr


def test_local_up_port_0_picks_a_free_port_and_says_which() -> None:
    cli = Path(sys.executable).parent / "routing-manager"
    proc = subprocess.Popen([str(cli), "local", "up", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=project.ROOT)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        port = int(ready["endpoint"].rsplit(":", 1)[1])
        assert port > 0
        boto3.client("sqs", endpoint_url=ready["endpoint"], region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").list_queues()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
