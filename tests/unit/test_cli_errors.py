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
    lines = result.stderr.splitlines()
    assert "" not in lines  # no stray empty line
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
    (["provider", "disable", "fal"], "missing option '--reason'"),
    (["provider", "disable", "fal", "--reason", "x", "--for", "soon"], "'soon': use a number and s, m, h or d"),
    (["provider", "enable", "fal", "--model", " "], "--model: give a model name"),
    (["explain", "events/routed-fal.json", "--live", "--state", "x.json"], "--live and --state together: choose one"),
    (["explain", "events/routed-fal.json", "--state", "events/routed-fal.json"], "not `provider status --json` output"),
    (["explain", "events/routed-fal.json", "--state", "missing.json"], "--state missing.json: No such file"),
])
def test_provider_options_are_checked_before_aws_is_asked(tmp_path: Path, args: list[str], message: str) -> None:
    result = run([*args, "--endpoint-url", _closed_port()], tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error as the AWS CLI prints one: exit 2, a single `error: …` line on stderr, nothing else."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.endswith("\n"), result
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "Usage" not in line and "╭" not in line, line
    return line


@pytest.mark.parametrize(("args", "message"), [
    (["provider", "disable", "fal", "--reason", "x", "--for", "30x"],
     "error: invalid value for '--for': '30x': use a number and s, m, h or d, e.g. 15m "
     "(see 'routing-manager provider disable --help')"),
    (["provider", "disable", "fal"],
     "error: missing option '--reason' (see 'routing-manager provider disable --help')"),
    (["replay", "--since", "banana"],
     "error: invalid value for '--since': 'banana': give an ISO 8601 time or a duration such as 2h "
     "(see 'routing-manager replay --help')"),
    (["local", "up", "--port", "70000"], "(see 'routing-manager local up --help')"),
    (["frobnicate"], "error: no such command 'frobnicate' (see 'routing-manager --help')"),
    (["explain", "--bogus", "events/routed-fal.json"],
     "error: no such option: --bogus (see 'routing-manager explain --help')"),
    (["--bogus"], "error: no such option: --bogus (see 'routing-manager --help')"),
    (["provider", "disable", "fal", "--reason", "x", "--for"],
     "error: option '--for' requires an argument (see 'routing-manager provider disable --help')"),
    (["explain", "a.json", "b.json"], "unexpected extra argument"),
    (["graph", "--format", "dot"], "error: invalid value for '--format': 'dot': use svg, png or mermaid"),
    (["replay", "--stale-after", "1x"], "error: invalid value for '--stale-after': '1x'"),
    (["local", "run", "--routing-table", "missing.json"],
     "error: invalid value for '--routing-table': missing.json: cannot read: No such file or directory "
     "(see 'routing-manager local run --help')"),
    (["local", "up", "--routing-table", "README.md"], "README.md: not valid JSON"),
])
def test_a_bad_option_or_argument_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    line = _one_line(run(args, tmp_path))
    assert line.startswith(message) if message.startswith("error: ") else message in line


def test_a_bad_routing_table_is_one_line(tmp_path: Path) -> None:
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    for spec in table["providers"].values():
        spec["maxQueueAgeSec"] = "soon"
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    line = _one_line(run(["local", "up", "--routing-table", str(path), "--port", "0"], tmp_path))
    assert "invalid routing table: providers.fal.maxQueueAgeSec: " in line
    assert "; providers.replicate.maxQueueAgeSec: " in line  # every bad entry, on the one line


@pytest.mark.parametrize("duration", ["0m", "0s", "-5m"])
def test_a_disable_for_no_time_is_refused_before_aws_is_asked(tmp_path: Path, duration: str) -> None:
    """`--for 0m` would be no end at all: a permanent disable. Refused before any AWS call."""
    with socket.socket() as endpoint:  # a connection would wait in its backlog
        endpoint.bind(("127.0.0.1", 0))
        endpoint.listen()
        url = f"http://127.0.0.1:{endpoint.getsockname()[1]}"
        line = _one_line(run(["provider", "disable", "fal", "--reason", "x", "--for", duration,
                              "--endpoint-url", url], tmp_path))
        endpoint.settimeout(0.2)
        with pytest.raises(TimeoutError):
            endpoint.accept()
    assert line.startswith(f"error: invalid value for '--for': '{duration}': ")


def test_an_unknown_model_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    line = _one_line(run(["provider", "disable", "fal", "--model", "nope", "--reason", "x",
                          "--endpoint-url", _closed_port()], tmp_path))
    assert line == "error: --model 'nope': not a model of fal (the routing table has: wan-i2v)"
    assert run(["provider", "enable", "replicate", "--model", "wan-i2v", "--endpoint-url", _closed_port()],
               tmp_path).stderr.strip().endswith("(the routing table has: minimax/video-01)")


def test_publish_prints_no_empty_line(tmp_path: Path) -> None:
    """Valid and invalid jobs, few and many (a progress bar, in a terminal only): no empty line on stderr."""
    valid = {"userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(json.dumps({**valid, "jobId": f"m-{i}"}) for i in range(25)) + "\n"
                    + json.dumps({**valid, "jobId": "bad", "lengthSec": "8"}))
    for jobs in (jobs_file(tmp_path), path):
        result = run(["publish", str(jobs), "--endpoint-url", _closed_port()], tmp_path)
        assert result.returncode == 1
        assert "" not in result.stderr.splitlines(), result.stderr
    invalid_only = run(["publish", "-", "--endpoint-url", _closed_port()], tmp_path, stdin='{"jobId": "x"}')
    assert invalid_only.returncode == 2 and "" not in invalid_only.stderr.splitlines()


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
        while time.monotonic() < deadline and (not log.exists() or not log.read_bytes().count(b"\n")):
            time.sleep(0.05)  # until the first job is decided: the 3,000 events are still being published
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
