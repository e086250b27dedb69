"""The CLI as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from routing_manager import project
from routing_manager.cli import app

runner = CliRunner()


def test_explain_json_for_each_sample_event() -> None:
    expected = {"routed-fal.json": ("route", "fal"), "routed-explicit-replicate.json": ("route", "replicate"),
                "rejected-no-route.json": ("reject", None), "rejected-missing-jobid.json": ("reject", None)}
    for name, (outcome, provider) in expected.items():
        result = runner.invoke(app, ["explain", "--json", str(project.EVENTS / name)])
        assert result.exit_code == 0, result.output
        decision = json.loads(result.stdout.strip())
        assert (decision["outcome"], decision["provider"]) == (outcome, provider)
        assert set(decision) == {"outcome", "provider", "model", "queue", "queueUrl", "reason", "rule", "explanation",
                                 "quoteUsd", "quoteUsdText", "priority", "providerRegion", "tableVersion"}


def test_explain_accepts_envelope_and_bare_detail(tmp_path: Path) -> None:
    detail = {"jobId": "j", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}
    for content in (detail, {"source": "frontend.api", "detail-type": "video.job.submitted", "detail": detail}):
        path = tmp_path / "e.json"
        path.write_text(json.dumps(content))
        result = runner.invoke(app, ["explain", "--json", str(path)])
        assert json.loads(result.stdout)["queue"] == "FalJobQueue"


def test_explain_table_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_QUEUE_URL", "https://sqs.example/123/FalJobQueue")
    result = runner.invoke(app, ["explain", str(project.EVENTS / "routed-fal.json")])
    assert result.exit_code == 0
    assert "short-720p-to-fal" in result.stdout and "routes to fal/wan-i2v" in result.stdout
    assert "https://sqs.example/123/FalJobQueue" in result.stdout  # the environment's queue URL wins


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read: No such file or directory"),
    ("{not json", "not JSON: Expecting property name"),
    ("[]", "an empty list holds no event"),
    ('[{"Source": "frontend.api", "DetailType": "x", "Detail": "{oops"}]', "Detail is not JSON"),
])
def test_explain_bad_files_exit_2_with_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["explain", str(path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and str(path) in result.stderr


def test_schemas_and_lock_are_current() -> None:
    assert runner.invoke(app, ["schemas"]).exit_code == 0
    assert runner.invoke(app, ["table", "lock", "--check"]).exit_code == 0


def test_table_validate_names_the_bad_entry(tmp_path: Path) -> None:
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    table["rules"][0]["route"][0]["provider"] = "veo"
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    result = runner.invoke(app, ["table", "validate", str(path)])
    assert result.exit_code == 2
    assert "route[0].provider 'veo' is not a provider" in result.stderr


@pytest.mark.local_stack
def test_local_run_json_reports_every_sample(tmp_path: Path) -> None:
    result = runner.invoke(app, ["local", "run", "--json", "--lambda-log", str(tmp_path / "l.log"),
                                 str(project.EVENTS)])
    assert result.exit_code == 0, result.output
    jobs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(jobs) == len(list(project.EVENTS.glob("*.json")))
    assert all(set(j) == {"jobId", "status", "provider", "model", "queue", "reason", "path"} for j in jobs)
    by_status = sorted(j["status"] for j in jobs)
    routed = len(list(project.EVENTS.glob("routed*.json")))
    assert by_status.count("ROUTED") == routed and by_status.count("REJECTED") == len(jobs) - routed
    assert "A corgi surfing" not in (tmp_path / "l.log").read_text()  # the Lambda never logs prompts


def test_local_run_missing_path_exits_2() -> None:
    result = runner.invoke(app, ["local", "run", "/no/such/events"])
    assert result.exit_code == 2 and "no such file or folder" in result.stderr


@pytest.mark.local_stack
def test_local_run_table_shows_a_job_without_id_as_none(tmp_path: Path) -> None:
    sample = project.EVENTS / "rejected-missing-jobid.json"
    result = runner.invoke(app, ["local", "run", "--lambda-log", str(tmp_path / "l.log"), str(sample)],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "(none)" in result.stdout and "missing_required_field:jobId" in result.stdout


def _too_big_to_start(tmp_path: Path) -> Path:
    """A detail EventBridge accepts whose envelope is over Step Functions' 256 KiB input quota."""
    detail = {"jobId": "huge-1", "userId": "u", "prompt": ""}
    detail["prompt"] = "x" * (256 * 1024 - 40 - len(json.dumps(detail, separators=(",", ":"))))
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(detail, separators=(",", ":")))
    return path


@pytest.mark.local_stack
def test_local_run_reports_an_event_that_cannot_start_as_dead_lettered(tmp_path: Path) -> None:
    result = runner.invoke(app, ["local", "run", "--json", "--lambda-log", str(tmp_path / "l.log"),
                                 str(_too_big_to_start(tmp_path))])
    assert result.exit_code == 0, result.output
    [job] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (job["jobId"], job["status"]) == ("huge-1", "DEAD_LETTERED")
    assert "execution input is over 262144 bytes" in job["reason"]


@pytest.mark.local_stack
def test_local_run_exits_1_when_a_job_is_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from routing_manager.local import moto_adapters

    monkeypatch.setattr(moto_adapters, "_dead_letter", lambda *args: False)  # the DLQ refuses it
    result = runner.invoke(app, ["local", "run", "--json", "--lambda-log", str(tmp_path / "l.log"),
                                 str(_too_big_to_start(tmp_path))])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "LOST"
    assert "1 job ended outside the workflow's own paths, with no record or outcome event promised (LOST)" in (
        result.stderr)


def test_local_run_checks_its_options_before_running(tmp_path: Path) -> None:
    graph = runner.invoke(app, ["local", "run", "--graph", str(tmp_path / "run.txt"), str(project.EVENTS)])
    assert graph.exit_code == 2 and "must end in .svg, .png or .mmd" in graph.stderr
    assert not (tmp_path / "run.txt").exists()
    timeout = runner.invoke(app, ["local", "run", "--timeout", "-1"])
    assert timeout.exit_code == 2 and "Traceback" not in timeout.output


def test_a_narrow_terminal_gets_a_table_that_reads() -> None:
    from io import StringIO

    from rich.console import Console

    from routing_manager.cli import _print_results
    from routing_manager.local.runner import JobResult, totals

    path = ["CheckJobId", "DecideRoute", "CheckDecision", "ClaimJob", "RouteOrReject", "EnqueueJob", "MarkRouted",
            "EmitRouted"]
    results = [JobResult("550e8400-e29b-41d4-a716-446655440000", "ROUTED", "fal", "wan-i2v", "FalJobQueue", None,
                         path, "arn")]
    screen = StringIO()
    _print_results(results, totals(results), Console(file=screen, width=80))
    text = screen.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "ended in" in text and "EmitRouted" in text  # the whole state name, not folded letter by letter
    assert "fal/wan-i2v" in text


@pytest.mark.local_stack
def test_local_run_reports_an_event_eventbridge_refuses(tmp_path: Path) -> None:
    detail = {"jobId": "too-big", "userId": "u", "prompt": "x" * (256 * 1024)}  # over PutEvents' 256 KiB entry
    path = tmp_path / "too-big.json"
    path.write_text(json.dumps(detail))
    result = runner.invoke(app, ["local", "run", "--json", "--lambda-log", str(tmp_path / "l.log"), str(path)])
    assert result.exit_code == 1
    job = json.loads(result.stdout)
    assert (job["jobId"], job["status"]) == ("too-big", "REFUSED")
    assert "EventBridge refused 1 event: ValidationException" in result.stderr


def test_explain_with_a_given_provider_state_says_why_each_candidate_was_skipped(tmp_path: Path) -> None:
    state = tmp_path / "state.jsonl"
    state.write_text("\n".join(json.dumps(line) for line in [
        {"provider": "fal", "model": None, "state": "disabled", "reason": "incident 4711", "until": None},
        {"provider": "replicate", "model": None, "state": "available", "reason": None, "until": None}]))
    event = str(project.EVENTS / "routed-fal.json")
    decision = json.loads(runner.invoke(app, ["explain", "--json", "--state", str(state), event]).stdout)
    assert (decision["outcome"], decision["provider"]) == ("route", "replicate")
    assert decision["explanation"][-1]["candidates"][0]["skipped"] == "disabled: incident 4711"
    table = runner.invoke(app, ["explain", "--state", str(state), event])
    assert table.exit_code == 0
    assert "fal/wan-i2v $0.64: dropped by availability: disabled: incident 4711" in table.stdout
    assert "replicate/minimax/video-01 $0.6664: chosen" in table.stdout
    # Without a state every provider counts as available, as before.
    assert json.loads(runner.invoke(app, ["explain", "--json", event]).stdout)["provider"] == "fal"


def test_explain_with_a_credit_balance_prices_the_job_in_credits(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    table["credits"] = {"creditsPerUsd": 100}
    path = tmp_path / "routing_table.json"
    path.write_text(json.dumps(table))
    monkeypatch.setenv("ROUTING_TABLE_PATH", str(path))
    event = str(project.EVENTS / "routed-fal.json")
    short = json.loads(runner.invoke(app, ["explain", "--json", "--credit-balance", "10", event]).stdout)
    assert (short["outcome"], short["reason"]) == ("reject", "insufficient_credits")
    enough = json.loads(runner.invoke(app, ["explain", "--json", "--credit-balance", "64", event]).stdout)
    assert (enough["provider"], enough["quoteUsd"]) == ("fal", 0.64)


@pytest.fixture
def live_decisions(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`explain --live` against a stack whose decisions carry the given liveState (no AWS)."""
    from routing_manager.cli import explain

    monkeypatch.setattr("routing_manager.cli.stack_outputs", lambda *a: {"ProviderStateTableName": "t"})
    monkeypatch.setattr("routing_manager.cli._aws_client", lambda *a: None)
    monkeypatch.setattr("routing_manager.providers.read_items", lambda ddb, table: {})

    def carrying(fields: dict[str, Any]) -> None:
        engine = explain._explain_engine()
        decide = engine.decide
        monkeypatch.setattr(engine, "decide", lambda *a: {**decide(*a), **fields})
        monkeypatch.setattr(explain, "_explain_engine", lambda region=None: engine)

    return carrying


@pytest.mark.parametrize(("fields", "line"), [
    ({"liveState": "stale", "liveStateAgeSec": 12.3}, "live state: stale (age 12.3 s)"),
    ({"liveState": "unread", "liveStateAgeSec": None}, "live state: unread"),
    ({"liveState": "fresh", "liveStateAgeSec": 0.4}, None),
    ({}, None),
])
def test_explain_live_says_when_the_provider_state_is_not_fresh(live_decisions: Any, fields: dict[str, Any],
                                                               line: str | None) -> None:
    live_decisions(fields)
    event = str(project.EVENTS / "routed-fal.json")
    human = runner.invoke(app, ["explain", "--live", event])
    assert human.exit_code == 0, human.output
    shown = [text for text in human.stdout.splitlines() if text.startswith("live state")]
    assert shown == ([line] if line else [])
    decision = json.loads(runner.invoke(app, ["explain", "--live", "--json", event]).stdout)
    assert {k: decision[k] for k in fields} == fields  # --json: the fields as they come


class _Recorded:
    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}


def test_local_up_passes_logs_and_routing_table_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from routing_manager.local import server

    seen = _Recorded()

    def serve(**kwargs: Any) -> None:
        seen.kwargs = kwargs
        kwargs["announce"]('{"endpoint": "ready"}')
        if kwargs["echo_logs"]:
            kwargs["echo_logs"]("[RulesFunction] a line")

    monkeypatch.setattr(server, "serve", serve)
    table = project.RULES_FUNCTION / "routing_table.json"
    result = runner.invoke(app, ["local", "up", "--port", "0", "--logs", "--routing-table", str(table)])
    assert result.exit_code == 0, result.output
    assert seen.kwargs["routing_table"] == table
    assert result.stdout == '{"endpoint": "ready"}\n' and result.stderr == "[RulesFunction] a line\n"
    plain = runner.invoke(app, ["local", "up", "--port", "0"])
    assert plain.exit_code == 0 and seen.kwargs["routing_table"] is None and seen.kwargs["echo_logs"] is None
    assert plain.stderr == ""


def test_local_run_passes_logs_and_routing_table_to_the_stack(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    import contextlib

    from routing_manager.local import runner as local_runner
    from routing_manager.local import stack

    seen = _Recorded()

    @contextlib.contextmanager
    def running(**kwargs: Any) -> Any:
        seen.kwargs = kwargs
        kwargs["echo_logs"]("[RulesFunction] decided")
        yield None

    monkeypatch.setattr(stack, "running", running)
    monkeypatch.setattr(local_runner, "publish_and_wait", lambda *a, **k: [])
    table = tmp_path / "routing_table.json"
    table.write_text((project.RULES_FUNCTION / "routing_table.json").read_text())
    log = tmp_path / "l.log"
    args = ["local", "run", "--lambda-log", str(log), str(project.EVENTS / "routed-fal.json")]
    result = runner.invoke(app, [*args, "--logs", "--routing-table", str(table)])
    assert result.exit_code == 0, result.output
    assert seen.kwargs["function_environment"] == {"ROUTING_TABLE_PATH": str(table.resolve())}
    assert "[RulesFunction] decided" in result.stderr
    assert log.read_text() == "[RulesFunction] decided\n"  # --lambda-log has the functions' lines
    quiet = runner.invoke(app, args)
    assert quiet.exit_code == 0 and seen.kwargs["function_environment"] is None
    assert "[RulesFunction]" not in quiet.stderr


def test_every_command_is_in_the_readme_table() -> None:
    """The README's CLI table is where an operator looks first: a command missing from it is undocumented."""
    import typer.main

    def commands(group: Any, prefix: tuple[str, ...] = ()) -> list[str]:
        if not hasattr(group, "commands"):  # typer's own copy of click: no isinstance on click.Group
            return [" ".join(prefix)]
        return [name for sub, command in group.commands.items() for name in commands(command, (*prefix, sub))]

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = "\n".join(line.split(" | ")[0] for line in readme.splitlines() if line.startswith("| `routing-manager "))
    missing = [name for name in commands(typer.main.get_command(app)) if name not in rows]
    assert missing == [], f"commands missing from README.md's CLI table: {missing}"


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-07T10:00:00Z", "2026-12-07T10:00:00+00:00"),
    ("2026-12-07T10:00:00", "2026-12-07T10:00:00+00:00"),  # no offset: UTC, as the help says
    ("2026-12-07T12:00:00+02:00", "2026-12-07T12:00:00+02:00"),
])
def test_replay_since_takes_an_iso_time_utc_unless_it_says(text: str, expected: str) -> None:
    from routing_manager.cli.replay import _since

    assert _since(text).isoformat() == expected


def test_replay_since_takes_a_duration_back_from_now() -> None:
    from datetime import UTC, datetime, timedelta

    from routing_manager.cli.replay import _since

    assert abs(datetime.now(UTC) - timedelta(hours=2) - _since("2h")) < timedelta(seconds=5)
