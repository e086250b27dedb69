"""`provider disable|enable --wait`: the change is only reported done once the deployed rules function
decides with it, asked as the heartbeat asks it (a dry run of the canary job)."""

from __future__ import annotations

import ast
import io
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from routing_manager import project, providers
from routing_manager.cli import provider as provider_cli
from routing_manager.cli.provider import WaitFailed, wait_until_decided

runner = CliRunner()
RUNBOOK = '(see docs/RUNBOOK.md "control state unreadable")'


def test_the_canary_job_is_the_heartbeats() -> None:
    """routing_manager.providers.CANARY_JOB is the heartbeat's own (which cannot be imported: it makes
    boto3 clients at import)."""
    tree = ast.parse((project.ROOT / "functions" / "heartbeat" / "app.py").read_text())
    constants: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("CANARY_KEY", "CANARY_JOB"):
                constants[name] = ast.literal_eval(ast.unparse(node.value).replace(
                    "CANARY_KEY", repr(constants.get("CANARY_KEY"))))
    assert constants["CANARY_KEY"] == providers.CANARY_KEY
    assert constants["CANARY_JOB"] == providers.CANARY_JOB


def answer(state: str, scope: str = "fal", live: str | None = "fresh", age: float | None = 0.4) -> dict[str, Any]:
    decision: dict[str, Any] = {"outcome": "route", "provider": "fal", "providers": [
        {"provider": "fal", "available": state != "disabled", "breakerOpen": False,
         "states": {"fal": "available", "fal#wan-i2v": "available", scope: state}},
        {"provider": "replicate", "available": True, "breakerOpen": False,
         "states": {"replicate": "available", "replicate#minimax/video-01": "available"}}]}
    if live is not None:
        decision.update(liveState=live, liveStateAgeSec=age)
    return decision


class FakeLambda:
    """The deployed rules function: answers the dry runs in turn (the last one again and again)."""

    def __init__(self, *answers: Any, function_error: str | None = None) -> None:
        self.answers = list(answers)
        self.function_error = function_error
        self.calls: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        self.calls.append({"FunctionName": FunctionName, "Payload": json.loads(Payload)})
        body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        response: dict[str, Any] = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(body).encode())}
        if self.function_error:
            response["FunctionError"] = self.function_error
        return response


class Clock:
    """Time that passes only when waited on (and a little per dry run)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        self.now += 0.05
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def wait(lam: FakeLambda, clock: Clock, scope: str = "fal", disabled: bool = True, timeout: float = 10) -> float:
    return wait_until_decided(lam, "rules-fn", scope, disabled, written_at=clock.now, timeout=timeout,
                              clock=clock, sleep=clock.sleep)


def test_waits_until_the_rules_function_decides_with_the_disable_then_the_cache_bound() -> None:
    lam, clock = FakeLambda(answer("available"), answer("available"), answer("disabled")), Clock()
    waited = wait(lam, clock)
    assert len(lam.calls) == 3
    assert lam.calls[0] == {"FunctionName": "rules-fn", "Payload": {"detail": providers.CANARY_JOB, "dryRun": True}}
    assert clock.slept[:2] == [provider_cli.POLL_SEC] * 2
    assert 2.0 <= waited < 2.2  # routing_core.live.MAX_AGE_SEC after the write: every environment's cache has it


def test_a_model_scope_and_an_enable() -> None:
    clock = Clock()
    assert wait(FakeLambda(answer("disabled", "fal#wan-i2v"), answer("available", "fal#wan-i2v")), clock,
                scope="fal#wan-i2v", disabled=False) >= 2.0
    slow = Clock()
    lam = FakeLambda(*[answer("available")] * 30, answer("disabled"))  # reflected after ~6 s: past the bound
    assert 6 < wait(lam, slow) < 8 and slow.slept[-1] == provider_cli.POLL_SEC  # no cache wait left to do


def test_gives_up_after_the_timeout() -> None:
    lam, clock = FakeLambda(answer("available")), Clock()
    with pytest.raises(WaitFailed) as failed:
        wait(lam, clock, timeout=3)
    assert str(failed.value) == f"the rules function still decides with the old state after 3 s {RUNBOOK}"
    assert 3 <= clock.now - 100 < 3.5


@pytest.mark.parametrize(("live", "age", "said"), [("stale", 12.3, "stale provider state (age 12.3 s)"),
                                                   ("unread", None, "unread provider state")])
def test_a_function_that_cannot_read_its_control_table_fails_at_once(live: str, age: float | None,
                                                                     said: str) -> None:
    lam, clock = FakeLambda(answer("available", live=live, age=age)), Clock()
    with pytest.raises(WaitFailed) as failed:
        wait(lam, clock)
    assert str(failed.value).startswith(f"the rules function cannot read its control table: it decides with {said}")
    assert len(lam.calls) == 1 and clock.slept == []


def test_a_failing_function_or_an_unknown_scope_fails_at_once() -> None:
    with pytest.raises(WaitFailed, match="failed: Runtime.ImportModuleError"):
        wait(FakeLambda({"errorType": "Runtime.ImportModuleError"}, function_error="Unhandled"), Clock())
    with pytest.raises(WaitFailed, match="reports no state for fal#veo-3"):
        wait(FakeLambda(answer("available")), Clock(), scope="fal#veo-3")
    with pytest.raises(WaitFailed, match="reports no state for fal"):
        wait(FakeLambda({"outcome": "route", "liveState": "fresh"}), Clock())  # no providers: no control table


# --- the commands -------------------------------------------------------------------------

class FakeAws:
    """dynamodb, events and sts as the kill switch uses them, and the rules function."""

    def __init__(self, lam: FakeLambda) -> None:
        self.lam = lam
        self.writes: list[str] = []

    def client(self, service: str, *_: Any) -> Any:
        return self.lam if service == "lambda" else self

    def update_item(self, **kwargs: Any) -> None:
        self.writes.append(kwargs["Key"]["sk"]["S"] if "sk" in kwargs["Key"] else json.dumps(kwargs["Key"]))

    def put_item(self, **_: Any) -> None:
        pass

    def put_events(self, **_: Any) -> dict[str, Any]:
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]}

    def get_caller_identity(self) -> dict[str, str]:
        return {"Arn": "arn:aws:iam::123456789012:user/oncall"}


OUTPUTS = {"ProviderStateTableName": "ProviderState-test", "EventBusName": "bus", "RulesFunctionName": "rules-fn"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    import routing_core.live

    def with_answers(*answers: Any, outputs: dict[str, str] = OUTPUTS) -> FakeAws:
        fake = FakeAws(FakeLambda(*answers))
        monkeypatch.setattr("routing_manager.cli._aws_client", fake.client)
        monkeypatch.setattr("routing_manager.cli.stack_outputs", lambda *a: outputs)
        return fake

    monkeypatch.setattr(routing_core.live, "MAX_AGE_SEC", 0.1)  # the cache bound, shortened for the test
    monkeypatch.setattr(provider_cli, "POLL_SEC", 0.01)
    return with_answers


def test_disable_wait_says_how_long_it_took(aws: Any) -> None:
    fake = aws(answer("available"), answer("disabled"))
    result = runner.invoke(app(), ["provider", "disable", "fal", "--reason", "incident 4711", "--wait"])
    assert result.exit_code == 0, result.output
    changed, decided = result.stdout.splitlines()
    assert changed == "fal disabled until enabled: incident 4711"
    assert decided.startswith("the rules function decides with it: ") and decided.endswith(" s after the change")
    assert len(fake.lam.calls) == 2 and len(fake.writes) == 1


def test_enable_wait_json_carries_the_wait(aws: Any) -> None:
    aws(answer("disabled", "fal#wan-i2v"), answer("available", "fal#wan-i2v"))
    result = runner.invoke(app(), ["provider", "enable", "fal", "--model", "wan-i2v", "--wait", "--json"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout)
    assert (line["provider"], line["model"], line["state"]) == ("fal", "wan-i2v", "available")
    assert 0.1 <= line["waitedSec"] < 5
    without = runner.invoke(app(), ["provider", "enable", "fal", "--json"])
    assert json.loads(without.stdout)["waitedSec"] is None


def test_wait_timeout_exits_1_in_one_line(aws: Any) -> None:
    aws(answer("available"))
    result = runner.invoke(app(), ["provider", "disable", "fal", "--reason", "x", "--wait", "--wait-timeout", "1"])
    assert result.exit_code == 1
    assert result.stdout == "fal disabled until enabled: x\n"  # the change was made: said so
    assert result.stderr == f"error: the rules function still decides with the old state after 1 s {RUNBOOK}\n"


def test_wait_on_a_function_that_cannot_read_its_control_table_exits_1(aws: Any) -> None:
    fake = aws(answer("available", live="stale", age=12.3))
    result = runner.invoke(app(), ["provider", "disable", "fal", "--reason", "x", "--wait"])
    assert result.exit_code == 1 and len(fake.lam.calls) == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: the rules function cannot read its control table") and "12.3 s" in line


def test_wait_needs_the_rules_function_before_anything_is_written(aws: Any) -> None:
    fake = aws(answer("disabled"), outputs={k: v for k, v in OUTPUTS.items() if k != "RulesFunctionName"})
    result = runner.invoke(app(), ["provider", "disable", "fal", "--reason", "x", "--wait", "--stack", "old"])
    assert result.exit_code == 1 and fake.writes == []
    assert result.stderr == "error: stack old has no RulesFunctionName output: deploy this version of template.yaml " \
                            "first\n"


def app() -> Any:
    from routing_manager.cli import app as cli_app

    return cli_app
