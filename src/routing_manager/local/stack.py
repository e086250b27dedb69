"""The local stack: the real template.yaml, translated by aws-sam-translator and deployed into
moto's CloudFormation; the real ASL executed by moto's interpreter; the real rules Lambda
run in this process. Used by the tests, `routing-manager local run` and `local up`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from routing_manager import project
from routing_manager.local import moto_adapters

REGION = "us-east-1"
STACK_NAME = "routing-manager-local"
TAP_QUEUE = "routing-manager-event-tap"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


class _NoManagedPolicies:
    """samtranslator asks IAM for managed policy ARNs; the template names ARNs only."""

    def load(self) -> dict[str, str]:
        return {}


def load_template(path: Path | None = None) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    result: dict[str, Any] = yaml_parse((path or project.TEMPLATE).read_text())
    return result


def translate(template: dict[str, Any] | None = None, parameters: dict[str, str] | None = None,
              packaged: bool = False) -> dict[str, Any]:
    """SAM -> CloudFormation, offline. For the local stack the ASL is inlined and function code is a
    placeholder (the real code runs in process); `packaged` gives what `sam package` would
    deploy instead (artifacts as S3 locations), for linting."""
    from samtranslator.translator.transform import transform

    # samtranslator warns of its own usage metrics ("There are unpublished metrics"): noise here.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    sam = json.loads(json.dumps(template or load_template()))
    for logical, resource in sam["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::StateMachine" and "DefinitionUri" in props:
            if packaged:
                props["DefinitionUri"] = f"s3://routing-manager-artifacts/{logical}.asl.json"
            else:
                props["Definition"] = json.loads((project.ROOT / props.pop("DefinitionUri")).read_text())
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in props:
            if packaged:
                props["CodeUri"] = f"s3://routing-manager-artifacts/{logical}.zip"
            else:
                del props["CodeUri"]
                props["InlineCode"] = "# runs in process on the local stack"
    translated: dict[str, Any] = transform(sam, parameters or {}, _NoManagedPolicies())
    return translated


@dataclass
class LocalStack:
    """A deployed stack and clients on it."""

    session: Any
    outputs: dict[str, str]
    functions: dict[str, moto_adapters.InProcessFunction]
    tap_queue_url: str
    endpoint_url: str | None = None
    name: str = STACK_NAME
    _seen_events: list[dict[str, Any]] = field(default_factory=list)
    _seen_messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=REGION, endpoint_url=self.endpoint_url)

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["RoutingStateMachineArn"]

    @property
    def rules(self) -> moto_adapters.InProcessFunction:
        return self.functions[self.outputs["RulesFunctionName"]]

    def outcome_events(self) -> list[dict[str, Any]]:
        """Every routing.manager event published so far (drains the tap queue)."""
        self._seen_events.extend(json.loads(m["Body"]) for m in self.messages(self.tap_queue_url, keep=False))
        return list(self._seen_events)

    def messages(self, queue_url: str, keep: bool = True) -> list[dict[str, Any]]:
        """Every message sent to a queue so far, as SQS returns them (drains the queue, remembers them)."""
        sqs = self.client("sqs")
        seen = self._seen_messages.setdefault(queue_url, [])
        fresh: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                        MessageAttributeNames=["All"]).get("Messages", [])
            if not batch:
                break
            for message in batch:
                fresh.append(message)
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if not keep:
            return fresh
        seen.extend(fresh)
        return list(seen)

    def record(self, job_id: str) -> dict[str, Any] | None:
        """The job's item in the Jobs table, as plain Python values."""
        from boto3.dynamodb.types import TypeDeserializer

        item = self.client("dynamodb").get_item(TableName=self.outputs["JobsTableName"],
                                                Key={"jobId": {"S": job_id}}, ConsistentRead=True).get("Item")
        if item is None:
            return None
        deserializer = TypeDeserializer()
        return {key: deserializer.deserialize(value) for key, value in item.items()}


# Execution environments a function may have side by side here, each its own module. The provider
# events function counts concurrently; the rules function keeps one: its decisions take
# milliseconds, while each environment's cold start (an import, a boto3 client) on a busy process
# took seconds and timed out DecideRoute (10 s) under the 230-job corpus. Many jobs at once queue
# on it instead (bench/run.py sends them in waves).
CONCURRENT_ENVIRONMENTS = {"ProviderEventsFunction": 10}

_FUNCTION_LOGGERS: set[str] = set()


def _load_handler(name: str, code_uri: str, handler: str, env: dict[str, str]) -> Any:
    """Import the function's module fresh, under its deployed environment, like a cold start.

    A cold start is a new process: loggers an earlier import configured (Powertools keeps its
    handler, bound to the stdout of that time, on the named logger) are dropped first."""
    with _IMPORTING:
        return _import_handler(name, code_uri, handler, env)


_IMPORTING = threading.Lock()  # one cold start at a time: it changes sys.path and the environment


def _import_handler(name: str, code_uri: str, handler: str, env: dict[str, str]) -> Any:
    module_name, _, attr = handler.rpartition(".")
    code_dir = (project.ROOT / code_uri).resolve()
    spec = importlib.util.spec_from_file_location(f"_local_lambda_{name}_{uuid.uuid4().hex[:8]}",
                                                  code_dir / f"{module_name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    loggers = logging.Logger.manager.loggerDict
    for logger_name in _FUNCTION_LOGGERS | {env.get("POWERTOOLS_SERVICE_NAME", "")}:
        loggers.pop(logger_name, None)
    before = set(loggers)
    saved = {key: os.environ.get(key) for key in env}
    # The function's folder is its package root while it imports, as on Lambda, and only then:
    # every function has an app.py, and one left on sys.path would shadow the others.
    sys.path.insert(0, str(code_dir))
    try:
        os.environ.update(env)
        with _own_metrics_buffers():
            spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(code_dir))
        for key, value in saved.items():  # only its own keys: other threads read the environment meanwhile
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _FUNCTION_LOGGERS.update(set(loggers) - before)
    return getattr(module, attr)


@contextlib.contextmanager
def _own_metrics_buffers() -> Iterator[None]:
    """Powertools' Metrics keeps its buffers on the class, shared by every instance in a process; each
    Lambda environment is a process of its own. A Metrics made while a module imports binds fresh ones."""
    try:
        from aws_lambda_powertools.metrics import Metrics
    except ImportError:  # a function without Powertools
        yield
        return
    with mock.patch.multiple(Metrics, _metrics={}, _dimensions={}, _metadata={}, _default_dimensions={}):
        yield


def quiet_moto() -> None:
    """moto warns of the unsupported QueuePolicy (nothing local needs it), and its interpreter logs
    every error a Retry or Catch handles, at ERROR, with its whole syntax tree. The execution
    history (what `local run` reports) holds the same facts."""
    logging.getLogger("moto").setLevel(logging.ERROR)
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)


def deploy(session: Any | None = None, endpoint_url: str | None = None, parameters: dict[str, str] | None = None,
           stack_name: str = STACK_NAME) -> LocalStack:
    """Deploy template.yaml into moto (in process under mock_aws, or a moto server at endpoint_url)."""
    import boto3

    moto_adapters.install()
    quiet_moto()
    session = session or boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                               region_name=REGION)
    params = {"Stage": "local", **(parameters or {})}
    sam = load_template()
    code_uris = {logical: res["Properties"]["CodeUri"] for logical, res in sam["Resources"].items()
                 if res["Type"] == "AWS::Serverless::Function"}
    handlers = {logical: res["Properties"]["Handler"] for logical, res in sam["Resources"].items()
                if res["Type"] == "AWS::Serverless::Function"}
    cfn_template = moto_adapters.definition_substitutions_as_join(translate(sam, params))

    cfn = session.client("cloudformation", region_name=REGION, endpoint_url=endpoint_url)
    # moto has no AWS::SQS::QueuePolicy (the DLQ's policy for EventBridge); nothing local needs it.
    # Resources moto's CloudFormation does not model (QueuePolicy, Dashboard): nothing local needs them.
    warnings.filterwarnings("ignore", message="Tried to parse AWS::.* but it's not supported")
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(cfn_template),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    if not stack["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stack["StackStatus"]:
        raise RuntimeError(f"local deploy failed: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    lam = session.client("lambda", region_name=REGION, endpoint_url=endpoint_url)
    resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    functions: dict[str, moto_adapters.InProcessFunction] = {}
    for res in resources:
        if res.get("ResourceType") != "AWS::Lambda::Function" or res["LogicalResourceId"] not in code_uris:
            continue
        config = lam.get_function_configuration(FunctionName=res["PhysicalResourceId"])
        env = dict(config.get("Environment", {}).get("Variables", {}))
        if endpoint_url:  # the function's own AWS clients must reach the local server, not AWS
            env["AWS_ENDPOINT_URL"] = endpoint_url
        logical = res["LogicalResourceId"]
        handler = _load_handler(logical, code_uris[logical], handlers[logical], env)
        fn = moto_adapters.InProcessFunction(
            handler=handler, name=config["FunctionName"], arn=config["FunctionArn"], timeout=float(config["Timeout"]),
            spawn=functools.partial(_load_handler, logical, code_uris[logical], handlers[logical], env),
            max_environments=CONCURRENT_ENVIRONMENTS.get(logical, 1))
        moto_adapters.IN_PROCESS[config["FunctionArn"]] = fn
        functions[config["FunctionName"]] = fn

    tap = _create_event_tap(session, endpoint_url, outputs.get("EventBusName", "default"), stack_name)
    return LocalStack(session=session, outputs=outputs, functions=functions, tap_queue_url=tap,
                      endpoint_url=endpoint_url, name=stack_name)


def _create_event_tap(session: Any, endpoint_url: str | None, bus: str, stack_name: str) -> str:
    """An SQS queue receiving every routing.manager event: what a downstream consumer would see."""
    sqs = session.client("sqs", region_name=REGION, endpoint_url=endpoint_url)
    events = session.client("events", region_name=REGION, endpoint_url=endpoint_url)
    name = TAP_QUEUE if stack_name == STACK_NAME else f"{stack_name}-event-tap"
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="routing-manager-event-tap", EventBusName=bus,
                    EventPattern=json.dumps({"source": ["routing.manager"]}))
    events.put_targets(Rule="routing-manager-event-tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
    return url


@contextlib.contextmanager
def mocked_aws() -> Iterator[None]:
    """moto's in-process AWS with the interpreter on, and dummy credentials, for the block."""
    from moto import mock_aws

    env = {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def deploy_unique(parameters: dict[str, str] | None = None) -> LocalStack:
    """Another stack beside the others in the same moto (own name, own Jobs-{Stage} table)."""
    import boto3

    suffix = uuid.uuid4().hex[:8]
    bus = f"routing-{suffix}"  # its own bus, or every stack's rule would start an execution per event
    boto3.client("events", region_name=REGION).create_event_bus(Name=bus)
    return deploy(parameters={"Stage": f"t{suffix}", "EventBusName": bus, **(parameters or {})},
                  stack_name=f"{STACK_NAME}-{suffix}")


@contextlib.contextmanager
def running(parameters: dict[str, str] | None = None) -> Iterator[LocalStack]:
    """An in-process local stack for the duration of the block."""
    with mocked_aws():
        stack = deploy(parameters=parameters)
        try:
            yield stack
        finally:
            release(stack)


def release(stack: LocalStack) -> None:
    """Forget the stack's in-process functions (their module state goes with them)."""
    for fn in stack.functions.values():
        moto_adapters.IN_PROCESS.pop(_arn_of(stack, fn), None)


def _arn_of(stack: LocalStack, fn: moto_adapters.InProcessFunction) -> str:
    for arn, registered in moto_adapters.IN_PROCESS.items():
        if registered is fn:
            return arn
    return ""


# --- executions -------------------------------------------------------------------------

@dataclass
class Execution:
    arn: str
    status: str
    input: dict[str, Any]
    error: str | None
    cause: str | None
    path: list[str]
    output: dict[str, Any] | None = None
    start: float = 0.0
    stop: float | None = None

    @property
    def job_id(self) -> Any:
        detail = self.input.get("detail")
        return detail.get("jobId") if isinstance(detail, dict) else None


def wait_for_executions(stack: LocalStack, expected: int, timeout: float = 30.0,
                        already: set[str] | None = None) -> list[Execution]:
    """Wait until `expected` new executions (not in `already`) have ended; never hangs:
    after `timeout` the ones still running are returned with status RUNNING.

    Polls at a growing interval: executions run in this process's threads and need the GIL."""
    deadline = time.monotonic() + timeout
    already = already or set()
    interval = 0.02
    while True:
        fresh = {arn: status for arn, status in moto_adapters.execution_statuses(stack.state_machine_arn).items()
                 if arn not in already}
        ended = len(fresh) >= expected and "RUNNING" not in fresh.values()
        if ended or time.monotonic() > deadline:
            return [describe_execution(arn) for arn in fresh]
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def execution_arns(stack: LocalStack) -> set[str]:
    return set(moto_adapters.execution_statuses(stack.state_machine_arn))


def describe_execution(arn: str) -> Execution:
    desc, history = moto_adapters.read_execution(arn)
    path = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    output = json.loads(desc["output"]) if desc.get("output") else None
    return Execution(arn=arn, status=desc["status"], input=json.loads(desc.get("input") or "{}"),
                     error=desc.get("error"), cause=desc.get("cause"), path=path,
                     output=output if isinstance(output, dict) else None,
                     start=desc["startDate"].timestamp(),
                     stop=desc["stopDate"].timestamp() if desc.get("stopDate") else None)
