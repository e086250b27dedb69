"""Every AWS-facing command as an operator meets it at 3 a.m.: an endpoint that refuses, no
credentials, no region. One line, an exit code a script can use, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from routing_manager import project

CLI = Path(sys.executable).parent / "routing-manager"


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once the socket is


def run(args: list[str], tmp_path: Path, credentials: bool = True, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"})
    if credentials:
        env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"})
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120, env=env, input=stdin,
                          cwd=project.ROOT)


def jobs_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.jsonl"
    valid = {"jobId": "j-1", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}
    path.write_text("\n".join(json.dumps(d) for d in (valid, {**valid, "jobId": "j-2"}, {**valid, "lengthSec": "8"})))
    return path


def test_publish_to_an_endpoint_that_refuses_reports_every_job(tmp_path: Path) -> None:
    result = run(["publish", str(jobs_file(tmp_path)), "--endpoint-url", _closed_port()], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert sum("not sent: Could not connect to the endpoint URL" in line for line in lines) == 2
    assert sum("invalid job: lengthSec" in line for line in lines) == 1
    assert lines[-1] == "0 sent, 1 invalid, 2 not sent"


def test_publish_without_credentials_says_so_per_job(tmp_path: Path) -> None:
    result = run(["publish", str(jobs_file(tmp_path)), "--region", "us-east-1"], tmp_path, credentials=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not sent: Unable to locate credentials" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "0 sent, 1 invalid, 2 not sent"


@pytest.mark.parametrize(("credentials", "extra", "message"), [
    (True, ["--endpoint-url", "CLOSED"], "Could not connect to the endpoint URL"),
    (False, ["--region", "us-east-1"], "no AWS credentials"),
    (False, [], "no AWS region"),
])
def test_replay_fails_in_one_line(tmp_path: Path, credentials: bool, extra: list[str], message: str) -> None:
    args = ["replay", *[(_closed_port() if a == "CLOSED" else a) for a in extra]]
    result = run(args, tmp_path, credentials=credentials)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


@pytest.mark.parametrize("command", [["provider", "status"], ["provider", "disable", "fal", "--reason", "x"],
                                     ["provider", "enable", "fal"],
                                     ["explain", "events/routed-fal.json", "--live"]])
@pytest.mark.parametrize(("credentials", "extra", "message"), [
    (True, ["--endpoint-url", "CLOSED"], "Could not connect to the endpoint URL"),
    (False, ["--region", "us-east-1"], "no AWS credentials"),
])
def test_provider_commands_fail_in_one_line(tmp_path: Path, command: list[str], credentials: bool,
                                            extra: list[str], message: str) -> None:
    args = [*command, *[(_closed_port() if a == "CLOSED" else a) for a in extra]]
    result = run(args, tmp_path, credentials=credentials)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line


@pytest.mark.parametrize(("args", "message"), [
    (["provider", "disable", "runway", "--reason", "x"], "unknown provider 'runway' (the routing table has: fal, "
                                                         "replicate)"),
    (["provider", "disable", "fal", "--reason", "  "], "--reason: say why"),
    (["provider", "disable", "fal"], "Missing option '--reason'"),
    (["provider", "disable", "fal", "--reason", "x", "--for", "soon"], "'soon': use a number and s, m, h or d"),
    (["provider", "enable", "fal", "--model", " "], "--model: give a model name"),
    (["explain", "events/routed-fal.json", "--live", "--state", "x.json"], "--live and --state: choose one"),
    (["explain", "events/routed-fal.json", "--state", "events/routed-fal.json"], "not `provider status --json` output"),
    (["explain", "events/routed-fal.json", "--state", "missing.json"], "--state missing.json: No such file"),
])
def test_provider_options_are_checked_before_aws_is_asked(tmp_path: Path, args: list[str], message: str) -> None:
    result = run([*args, "--endpoint-url", _closed_port()], tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_replay_refuses_a_stale_window_shorter_than_an_execution(tmp_path: Path) -> None:
    result = run(["replay", "--stale-after", "1m"], tmp_path)
    assert result.returncode == 2
    assert "under the 5-minute EXPRESS limit" in result.stderr and "--force" in result.stderr


def test_help_and_version(tmp_path: Path) -> None:
    for command in ([], ["publish"], ["replay"], ["local", "run"], ["local", "up"]):
        short = run([*command, "-h"], tmp_path)
        assert short.returncode == 0 and "Usage" in short.stdout, command
        assert "<bool>" not in short.stdout and "<list[str]>" not in short.stdout and "{event_file}" not in short.stdout
    publish_help = run(["publish", "-h"], tmp_path).stdout
    assert "JSON Lines" in publish_help and "Exit codes" in publish_help
    version = run(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("routing-manager ")


@pytest.mark.local_stack
def test_local_run_interrupted_reports_what_ran_and_keeps_json_clean(tmp_path: Path) -> None:
    import signal
    import time

    events = tmp_path / "events"
    events.mkdir()
    for i in range(3000):
        job = {"jobId": f"int-{i}", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}
        (events / f"{i:04}.json").write_text(json.dumps(job))
    log = tmp_path / "l.log"
    proc = subprocess.Popen([str(CLI), "local", "run", "--json", "--lambda-log", str(log), str(events)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project.ROOT)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (not log.exists() or log.read_bytes().count(b"\n") < 50):
            time.sleep(0.2)  # until jobs are being decided: 3,000 take far longer than the wait below
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # never leave a 3,000-job run behind, eating the next tests' CPU
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    jobs = [json.loads(line) for line in out.splitlines()]  # every line a job: no stray Lambda line
    assert 0 < len(jobs) < 3000
    assert f"interrupted: {len(jobs)} of 3000 jobs reported" in err
    assert "Traceback" not in err and "closed file" not in err


@pytest.mark.local_stack
def test_publish_reports_what_went_out_when_the_endpoint_stops_midway(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from botocore.config import Config
    from moto.server import ThreadedMotoServer
    from typer.testing import CliRunner

    from routing_manager.cli import app

    port = int(_closed_port().rsplit(":", 1)[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    events = boto3.client("events", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"total_max_attempts": 1}))

    class StopsAfterThreeBatches:
        calls = 0

        def put_events(self, **kwargs: object) -> object:
            self.calls += 1
            if self.calls == 4:
                server.stop()
            return events.put_events(**kwargs)

    monkeypatch.setattr("routing_manager.cli._aws_client", lambda *a: StopsAfterThreeBatches())
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(json.dumps({"jobId": f"mid-{i}", "userId": "u", "prompt": "p", "lengthSec": 8})
                              for i in range(250)))
    result = CliRunner().invoke(app, ["publish", str(path)])
    assert result.exit_code == 1
    assert result.stdout.count("sent ") == 30  # three batches of ten went out, each reported
    assert result.stderr.count("not sent: Could not connect to the endpoint URL") == 220
    assert result.stderr.strip().splitlines()[-1] == "30 sent, 0 invalid, 220 not sent"
