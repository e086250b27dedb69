"""Lambda functions on the local stack, run as Lambda runs them.

Each execution environment is a process of its own: the function's code folder as its task root, its
template Environment (plus the local endpoint, region and dummy credentials) for its whole life, and
AWS's runtime interface client (`awslambdaric`) as its loop, driven through the Lambda Runtime API
that the stack serves for it (`/2018-06-01/runtime/invocation/next|{id}/response|{id}/error`,
`/init/error`). Nothing of the function is imported into the stack's process, so nothing the stack's
process has (its environment, sys.path, loggers, Powertools' class-level metric buffers) can leak in
or be missing.

A function keeps a warm pool of environments: an invocation takes an idle one or starts one (a cold
start, counted) up to the function's reserved concurrency or the local cap. An environment that
passes the function's Timeout is killed, one whose process exits mid-invocation is gone, and both
answer with Lambda's error shape (`Sandbox.Timedout`, `Runtime.ExitError`); an init error answers
with the runtime's own (`Runtime.ImportModuleError`, ...). The next invocation starts a new one.

Logs: every line a function prints goes to its log group (LoggingConfig or /aws/lambda/NAME), and
lines in CloudWatch's embedded metric format become metrics, as CloudWatch does with Lambda's logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RUNTIME_PATH = "/2018-06-01/runtime"
# Lambda bounds the init phase of an on-demand environment at 10 s (Lambda developer guide,
# "Lambda execution environment lifecycle": "The Init phase is limited to 10 seconds").
INIT_TIMEOUT_SEC = 10.0
# Environments a function may have side by side here when it reserves no concurrency. Lambda would
# scale out further; on a 2-core machine more processes only contend (docs/LOCAL_STACK.md).
DEFAULT_MAX_ENVIRONMENTS = 4
LineSink = Callable[[str, str, str], None]  # (function name, log stream, line)
_SIGNAL_TEXT: dict[int, str] = {signal.SIGSEGV: "segmentation fault", signal.SIGKILL: "killed",
                                signal.SIGABRT: "aborted", signal.SIGTERM: "terminated", signal.SIGBUS: "bus error"}


@dataclass
class Result:
    """What Invoke answers: the payload, and Lambda's FunctionError ('Unhandled') when it failed."""

    payload: bytes
    function_error: str | None = None

    def json(self) -> Any:
        return json.loads(self.payload or b"null")


def _error(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


@dataclass
class FunctionConfig:
    """What an environment is made from: the deployed function's configuration."""

    name: str
    arn: str
    code_dir: Path
    handler: str
    environment: dict[str, str]
    timeout: float = 3.0
    memory_mb: int = 128
    log_group: str = ""
    log_format: str = "Text"

    def __post_init__(self) -> None:
        self.log_group = self.log_group or f"/aws/lambda/{self.name}"


def environment_of(config: FunctionConfig, endpoint_url: str, runtime_api: str, log_stream: str) -> dict[str, str]:
    """Lambda's reserved variables and the function's own; of this process's environment only PATH (the
    child is this Python, found by its own path)."""
    region = config.arn.split(":")[3] if config.arn.count(":") >= 5 else "us-east-1"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "en_US.UTF-8", "TZ": ":UTC",
        "PYTHONPATH": str(config.code_dir), "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",  # local only: a timed-out invocation's SIGABRT logs every thread's stack
        "LAMBDA_TASK_ROOT": str(config.code_dir), "_HANDLER": config.handler,
        "AWS_LAMBDA_RUNTIME_API": runtime_api, "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": config.name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": config.log_group, "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_LOG_FORMAT": config.log_format, "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": endpoint_url,
        **config.environment,
    }


class _Invocation:
    def __init__(self, request_id: str, payload: bytes, deadline_ms: int, arn: str) -> None:
        self.request_id = request_id
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.result: Result | None = None
        self.done = threading.Event()


class Environment:
    """One execution environment: a process and the Runtime API it polls."""

    def __init__(self, config: FunctionConfig, endpoint_url: str, log_sink: LineSink) -> None:
        self.config = config
        self.id = uuid.uuid4().hex[:12]
        self.log_stream = f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{self.id}"  # as Lambda names it
        self.log_sink = log_sink
        self._next: queue.Queue[_Invocation | None] = queue.Queue()
        self._current: _Invocation | None = None
        self.init_error: bytes | None = None
        self.settled = threading.Event()  # init is over: the runtime asked for work, or exited
        self.exited = threading.Event()
        self.killed = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _runtime_api_handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name=f"runtime-api-{config.name}",
                         daemon=True).start()
        port = self._server.server_address[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", config.handler], cwd=config.code_dir,
            env=environment_of(config, endpoint_url, f"127.0.0.1:{port}", self.log_stream),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._read_logs, name=f"logs-{config.name}", daemon=True).start()

    def _read_logs(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line:
                self.log_sink(self.config.name, self.log_stream, line)
        self.process.wait()
        self.exited.set()
        self.settled.set()
        self._fail_current()

    def _fail_current(self) -> None:
        invocation = self._current
        if invocation is None or invocation.done.is_set():
            return
        if self.init_error is not None:
            invocation.result = Result(self.init_error, "Unhandled")
        else:
            invocation.result = Result(_error("Runtime.ExitError", f"RequestId: {invocation.request_id} Error: "
                                                                   f"Runtime exited with error: {self._exit_text()}"),
                                       "Unhandled")
        invocation.done.set()

    def _exit_text(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:  # as Lambda words it: "signal: segmentation fault"
            return f"signal: {_SIGNAL_TEXT.get(-code, f'signal {-code}')}"
        return f"exit status {code}"

    def invoke(self, payload: bytes) -> Result:
        """Run one invocation to its end: a response, an error, the Timeout, or the process's exit."""
        config = self.config
        request_id = str(uuid.uuid4())
        self.settled.wait(INIT_TIMEOUT_SEC)  # the init phase has its own bound, then the Timeout runs
        deadline = time.time() + config.timeout
        invocation = _Invocation(request_id, payload, int(deadline * 1000), config.arn)
        self._current = invocation
        if self.exited.is_set():
            self._fail_current()
        else:
            self._next.put(invocation)
        if not invocation.done.wait(config.timeout) or invocation.result is None:
            self._current = None  # the process's exit below is the timeout's, not an invocation's ExitError
            self._dump_stacks()
            self.kill()
            invocation.result = Result(_error("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out "
                                                                  f"after {config.timeout:.2f} seconds"), "Unhandled")
            invocation.done.set()
        self._current = None
        return invocation.result

    def _dump_stacks(self, grace_sec: float = 2.0) -> None:
        """Before the kill of a timed-out invocation: SIGABRT, which PYTHONFAULTHANDLER answers by printing
        where every thread of the function was, into its log (Lambda only says "Task timed out")."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGABRT)
            self.exited.wait(grace_sec)  # the log reader has read the dump once the process is gone

    @property
    def alive(self) -> bool:
        return not self.killed and not self.exited.is_set() and self.process.poll() is None

    def kill(self) -> None:
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._next.put(None)
        self._server.shutdown()
        self._server.server_close()


def _runtime_api_handler(env: Environment) -> type[BaseHTTPRequestHandler]:
    class RuntimeApi(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # the runtime polls: one line per request would drown the function's own

        def _answer(self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            with contextlib.suppress(ConnectionError):  # the runtime was killed (a timeout): no one to tell
                self.end_headers()
                self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != f"{RUNTIME_PATH}/invocation/next":
                self._answer(HTTPStatus.NOT_FOUND)
                return
            env.settled.set()
            invocation = env._next.get()
            if invocation is None:  # the environment is going away
                self._answer(HTTPStatus.GONE)
                return
            self._answer(HTTPStatus.OK, invocation.payload, {
                "Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": invocation.arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0"})

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            if self.path == f"{RUNTIME_PATH}/init/error":
                env.init_error = body
                self._answer(HTTPStatus.ACCEPTED)
                return
            prefix = f"{RUNTIME_PATH}/invocation/"
            request_id, _, outcome = self.path.removeprefix(prefix).partition("/")
            invocation = env._current
            if not self.path.startswith(prefix) or outcome not in ("response", "error") or invocation is None \
                    or invocation.request_id != request_id or invocation.done.is_set():
                self._answer(HTTPStatus.BAD_REQUEST, _error("InvalidRequestID", "no such invocation in flight"))
                return
            invocation.result = Result(body, "Unhandled" if outcome == "error" else None)
            invocation.done.set()
            self._answer(HTTPStatus.ACCEPTED)

    return RuntimeApi


@dataclass
class Function:
    """A deployed function's pool of execution environments.

    `faults` are for tests: before an invocation reaches an environment, the first is taken; an AWS
    error code string is a Lambda service error the invoke adapter raises (e.g. 'TooManyRequestsException'),
    an exception instance answers as the function's unhandled error of that type. `intercept`, when
    set, is called with (event, invoke) in place of invoke, to change what the function answers."""

    config: FunctionConfig
    endpoint_url: str
    log_sink: LineSink
    max_environments: int = DEFAULT_MAX_ENVIRONMENTS
    faults: list[str | BaseException] = field(default_factory=list)
    intercept: Callable[[Any, Callable[[Any], Result]], Result] | None = None
    invocations: int = 0
    cold_starts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _idle: list[Environment] = field(default_factory=list)
    _all: list[Environment] = field(default_factory=list)
    _free: threading.Condition = field(default_factory=threading.Condition)
    _closed: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def arn(self) -> str:
        return self.config.arn

    @property
    def timeout(self) -> float:
        return self.config.timeout

    @property
    def environments(self) -> int:
        return len(self._all)

    def invoke(self, payload: bytes) -> Result:
        """A synchronous invoke: the request waits for a free environment (Lambda would scale out; here
        the pool is capped), runs there, and the environment goes back to the pool if it lived."""
        environment = self._take()
        try:
            return environment.invoke(payload)
        finally:
            self._give_back(environment)

    def invoke_event(self, event: Any) -> Result:
        def real(value: Any) -> Result:
            return self.invoke(json.dumps(value).encode())

        return self.intercept(event, real) if self.intercept else real(event)

    def _take(self) -> Environment:
        with self._free:
            while True:
                if self._closed:
                    raise RuntimeError(f"function {self.name} is shut down")
                while self._idle:
                    environment = self._idle.pop()
                    if environment.alive:
                        return environment
                    self._all.remove(environment)
                if len(self._all) < self.max_environments:
                    environment = Environment(self.config, self.endpoint_url, self.log_sink)
                    self._all.append(environment)
                    self.cold_starts += 1
                    return environment
                self._free.wait()

    def _give_back(self, environment: Environment) -> None:
        with self._free:
            if environment.alive and not self._closed:
                self._idle.append(environment)
            else:
                if environment in self._all:
                    self._all.remove(environment)
                environment.kill()
            self._free.notify()

    def shutdown(self) -> None:
        with self._free:
            self._closed = True
            environments, self._all, self._idle = list(self._all), [], []
            self._free.notify_all()
        for environment in environments:
            environment.kill()


class LogSink:
    """Where the functions' lines go: their log group in moto's CloudWatch Logs, metrics for the lines
    in the embedded metric format (CloudWatch extracts them from Lambda's logs on AWS: "Embedding
    metrics within logs", CloudWatch user guide), and the terminal with the function's name when
    `echo` is set (`local up --logs`)."""

    def __init__(self, account: str, region: str, echo: Callable[[str], None] | None = None) -> None:
        self.account = account
        self.region = region
        self.echo = echo
        self._streams: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.groups: dict[str, str] = {}  # function name -> log group

    def __call__(self, function: str, stream: str, line: str) -> None:
        from moto.logs.models import logs_backends

        if self.echo is not None:
            self.echo(f"[{function}] {line}")
        group = self.groups.get(function, f"/aws/lambda/{function}")
        logs = logs_backends[self.account][self.region]
        with self._lock:
            if (group, stream) not in self._streams:
                if group not in logs.groups:
                    logs.create_log_group(group, tags={})
                with contextlib.suppress(Exception):  # already there: another stack's environment made it
                    logs.create_log_stream(group, stream)
                self._streams.add((group, stream))
            logs.put_log_events(group, stream, [{"timestamp": int(time.time() * 1000), "message": line}])
        if line.startswith("{") and '"_aws"' in line:
            self._metrics_from(line)

    def _metrics_from(self, line: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        try:
            document = json.loads(line)
            directives = document["_aws"]["CloudWatchMetrics"]
        except (ValueError, KeyError, TypeError):
            return  # not EMF: CloudWatch keeps it as a log line only
        backend = cloudwatch_backends[self.account][self.region]
        for directive in directives:
            for dimension_set in directive.get("Dimensions") or [[]]:
                dimensions = [{"Name": name, "Value": str(document.get(name, ""))} for name in dimension_set]
                data = []
                for metric in directive.get("Metrics", []):
                    value = document.get(metric["Name"])
                    values = value if isinstance(value, list) else [value]
                    data += [{"MetricName": metric["Name"], "Value": float(v), "Unit": metric.get("Unit", "None"),
                              "Dimensions": dimensions} for v in values if isinstance(v, (int, float))]
                if data:
                    backend.put_metric_data(directive["Namespace"], data)
