"""Functions on the local stack run as Lambda runs them: a process per execution environment, driven
through the Runtime API by awslambdaric, its own environment for its whole life. Invoked with boto3
through moto, as the workflow invokes them."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from routing_manager.local import lambda_runtime, moto_adapters
from routing_manager.local import stack as local_stack

pytestmark = pytest.mark.local_stack

CODE = '''
import json, os, time
from pathlib import Path

if Path(os.environ["FLAGS"], "break-import").exists():
    raise ValueError("the module cannot load")
STARTED = time.time()
_sqs = None  # made lazily, on the first call that needs it: what once missed the local endpoint


def handler(event, context):
    global _sqs
    if event.get("queue"):
        if _sqs is None:
            import boto3
            _sqs = boto3.client("sqs")
        return _sqs.create_queue(QueueName=event["queue"])["QueueUrl"]
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("wait_for"):  # hold the environment until the test says so
        while not Path(os.environ["FLAGS"], event["wait_for"]).exists():
            time.sleep(0.01)
    if event.get("exit"):
        os._exit(1)
    print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
        "Namespace": "RuntimeTest", "Dimensions": [["service"]], "Metrics": [{"Name": "Calls", "Unit": "Count"}]}]},
        "service": "t", "Calls": 1}))
    return {"pid": os.getpid(), "leak": os.environ.get("LEAKED_FROM_THE_STACK"),
            "remainingMs": context.get_remaining_time_in_millis()}
'''


@pytest.fixture
def function(tmp_path: Path) -> Iterator[tuple[Any, lambda_runtime.Function, Path]]:
    """A function deployed in moto whose code runs through lambda_runtime, and the folder of its flags."""
    code, flags = tmp_path / "code", tmp_path / "flags"
    code.mkdir()
    flags.mkdir()
    (code / "app.py").write_text(CODE)
    with local_stack.mocked_aws():
        moto_adapters.install()
        lam = boto3.client("lambda", region_name="us-east-1")
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        name = f"fn-{uuid.uuid4().hex[:6]}"
        arn = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                                  Code={"ZipFile": b"x"}, Timeout=2)["FunctionArn"]
        config = lambda_runtime.FunctionConfig(name=name, arn=arn, code_dir=code, handler="app.handler",
                                               environment={"FLAGS": str(flags)}, timeout=2)
        fn = lambda_runtime.Function(config, local_stack._IN_PROCESS_SERVER["endpoint"],
                                     lambda_runtime.LogSink(local_stack.ACCOUNT, "us-east-1"), max_environments=3)
        moto_adapters.LOCAL_FUNCTIONS[arn] = fn
        try:
            yield lam, fn, flags
        finally:
            moto_adapters.LOCAL_FUNCTIONS.pop(arn)
            fn.shutdown()


def invoke(lam: Any, name: str, event: dict[str, Any]) -> tuple[str | None, Any]:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def test_a_client_made_late_in_the_handler_reaches_the_local_endpoint(
        function: tuple[Any, lambda_runtime.Function, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    lam, fn, _ = function
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # nothing of the stack's process helps the function
    monkeypatch.setenv("LEAKED_FROM_THE_STACK", "yes")
    error, answer = invoke(lam, fn.name, {})
    assert error is None and answer["leak"] is None
    error, url = invoke(lam, fn.name, {"queue": "made-by-the-function"})  # the first boto3 client, after start
    assert error is None and url.startswith(local_stack._IN_PROCESS_SERVER["endpoint"])
    assert boto3.client("sqs", region_name="us-east-1").get_queue_url(QueueName="made-by-the-function")


def test_a_function_past_its_timeout_is_killed_and_the_next_invoke_runs_in_a_new_environment(
        function: tuple[Any, lambda_runtime.Function, Path]) -> None:
    lam, fn, _ = function
    _, first = invoke(lam, fn.name, {})
    error, answer = invoke(lam, fn.name, {"sleep": 30})
    assert error == "Unhandled" and answer["errorType"] == "Sandbox.Timedout"
    assert answer["errorMessage"].endswith("Task timed out after 2.00 seconds")
    # Where it was stuck is in its log: every thread's stack, the handler's sleep among them.
    messages = [e["message"] for e in boto3.client("logs", region_name="us-east-1").filter_log_events(
        logGroupName=f"/aws/lambda/{fn.name}")["events"]]
    assert "Fatal Python error: Aborted" in messages
    assert any(m.strip().startswith('File "') and m.strip().endswith("in handler") for m in messages), messages
    error, after = invoke(lam, fn.name, {})
    assert error is None and after["pid"] != first["pid"] and fn.cold_starts == 2


def test_a_process_that_exits_is_a_runtime_exit_error_and_the_next_invoke_works(
        function: tuple[Any, lambda_runtime.Function, Path]) -> None:
    lam, fn, _ = function
    error, answer = invoke(lam, fn.name, {"exit": True})
    assert error == "Unhandled" and answer["errorType"] == "Runtime.ExitError"
    assert answer["errorMessage"].endswith("Runtime exited with error: exit status 1")
    assert invoke(lam, fn.name, {})[0] is None


def test_an_import_that_raises_is_an_init_error_and_a_fixed_module_starts_again(
        function: tuple[Any, lambda_runtime.Function, Path]) -> None:
    lam, fn, flags = function
    (flags / "break-import").touch()
    error, answer = invoke(lam, fn.name, {})
    assert error == "Unhandled"
    assert (answer["errorType"], answer["errorMessage"]) == ("ValueError", "the module cannot load")
    (flags / "break-import").unlink()
    assert invoke(lam, fn.name, {})[0] is None


def test_busy_environments_make_new_ones_idle_ones_are_reused(
        function: tuple[Any, lambda_runtime.Function, Path]) -> None:
    lam, fn, flags = function
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(invoke(lam, fn.name, {"wait_for": "go"})))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:  # all three hold an environment until "go": none could serve another
        while thread.is_alive() and fn.environments < 3:
            thread.join(0.05)
    (flags / "go").touch()
    for thread in threads:
        thread.join()
    assert len({answer["pid"] for _, answer in answers}) == 3 and fn.cold_starts == 3
    pids = {invoke(lam, fn.name, {})[1]["pid"] for _ in range(5)}
    assert pids <= {answer["pid"] for _, answer in answers} and fn.cold_starts == 3


def test_what_a_function_prints_is_in_its_log_group_and_emf_lines_are_metrics(
        function: tuple[Any, lambda_runtime.Function, Path]) -> None:
    lam, fn, _ = function
    invoke(lam, fn.name, {})
    invoke(lam, fn.name, {})
    logs = boto3.client("logs", region_name="us-east-1")
    events = logs.filter_log_events(logGroupName=f"/aws/lambda/{fn.name}")["events"]
    assert sum('"Calls": 1' in event["message"] for event in events) == 2
    now = datetime.now(UTC)
    stats = boto3.client("cloudwatch", region_name="us-east-1").get_metric_statistics(
        Namespace="RuntimeTest", MetricName="Calls", Dimensions=[{"Name": "service", "Value": "t"}],
        StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=1), Period=60, Statistics=["Sum"])
    assert sum(point["Sum"] for point in stats["Datapoints"]) == 2


def test_the_environment_is_the_functions_own() -> None:
    config = lambda_runtime.FunctionConfig(name="f", arn="arn:aws:lambda:eu-west-1:123456789012:function:f",
                                           code_dir=Path("/code"), handler="app.handler",
                                           environment={"TABLE": "t"}, timeout=3, memory_mb=256)
    env = lambda_runtime.environment_of(config, "http://127.0.0.1:1", "127.0.0.1:2", "stream")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1" and env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:2"
    assert (env["AWS_REGION"], env["TABLE"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) == ("eu-west-1", "t", "256")
    assert set(env) - set(os.environ) >= {"LAMBDA_TASK_ROOT", "_HANDLER"}
    assert "VIRTUAL_ENV" not in env and "PYTEST_CURRENT_TEST" not in env
