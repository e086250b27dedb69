"""The local stack: the real template.yaml, translated by aws-sam-translator and deployed into
moto's CloudFormation; the real ASL executed by moto's interpreter; the real Lambda code run as
Lambda runs it, each execution environment a process of its own (routing_manager.local.lambda_runtime)
that reaches this stack over HTTP. Used by the tests, `routing-manager local run` and `local up`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routing_manager import project
from routing_manager.local import lambda_runtime, moto_adapters

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
    placeholder (the local stack runs the CodeUri folder itself); `packaged` gives what `sam package` would
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
                props["InlineCode"] = "# the local stack runs the CodeUri folder (lambda_runtime)"
    translated: dict[str, Any] = transform(sam, parameters or {}, _NoManagedPolicies())
    return translated


@dataclass
class LocalStack:
    """A deployed stack and clients on it."""

    session: Any
    outputs: dict[str, str]
    functions: dict[str, lambda_runtime.Function]
    tap_queue_url: str
    endpoint_url: str | None = None
    name: str = STACK_NAME
    region: str = REGION
    _seen_events: list[dict[str, Any]] = field(default_factory=list)
    _seen_messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["RoutingStateMachineArn"]

    @property
    def rules(self) -> lambda_runtime.Function:
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


def quiet_moto() -> None:
    """moto warns of the unsupported QueuePolicy (nothing local needs it), and its interpreter logs
    every error a Retry or Catch handles, at ERROR, with its whole syntax tree. The execution
    history (what `local run` reports) holds the same facts."""
    logging.getLogger("moto").setLevel(logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request: the functions' own drown
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)


def deploy(session: Any | None = None, endpoint_url: str | None = None, parameters: dict[str, str] | None = None,
           stack_name: str = STACK_NAME, function_environment: dict[str, str] | None = None,
           echo_logs: Callable[[str], None] | None = None, region: str = REGION) -> LocalStack:
    """Deploy template.yaml into moto (in process under mocked_aws(), or a moto server at endpoint_url).

    `function_environment` is added to every function's Environment (UpdateFunctionConfiguration, as
    on AWS) before any environment starts; `echo_logs` receives every line the functions print; `region`
    is the region deployed to (a second region's stack beside the first, for a two-region deployment)."""
    import boto3

    moto_adapters.install()
    quiet_moto()
    functions_endpoint = endpoint_url or _IN_PROCESS_SERVER.get("endpoint")
    if not functions_endpoint:
        raise RuntimeError("the local stack's functions need an endpoint: deploy inside mocked_aws() or give one")
    session = session or boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                               region_name=region)
    params = {"Stage": "local", "LogLevel": "ALL", **(parameters or {})}  # job show reads each state from the log
    sam = load_template()
    sam_functions = {logical: res["Properties"] for logical, res in sam["Resources"].items()
                     if res["Type"] == "AWS::Serverless::Function"}
    cfn_template = moto_adapters.definition_substitutions_as_join(translate(sam, params))

    cfn = session.client("cloudformation", region_name=region, endpoint_url=endpoint_url)
    # Resources moto's CloudFormation does not model (QueuePolicy, Dashboard): nothing local needs them.
    warnings.filterwarnings("ignore", message="Tried to parse AWS::.* but it's not supported")
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(cfn_template),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    if not stack["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stack["StackStatus"]:
        raise RuntimeError(f"local deploy failed: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    lam = session.client("lambda", region_name=region, endpoint_url=endpoint_url)
    resources = cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in resources if "LogicalResourceId" in r}
    sink = lambda_runtime.LogSink(ACCOUNT, region, echo_logs)
    functions: dict[str, lambda_runtime.Function] = {}
    for res in resources:
        logical = res.get("LogicalResourceId", "")
        if res.get("ResourceType") != "AWS::Lambda::Function" or logical not in sam_functions:
            continue
        config = lam.get_function_configuration(FunctionName=res["PhysicalResourceId"])
        env = dict(config.get("Environment", {}).get("Variables", {}))
        if function_environment:
            env.update(function_environment)
            lam.update_function_configuration(FunctionName=config["FunctionName"], Environment={"Variables": env})
        fn = lambda_runtime.Function(
            config=_function_config(config, sam_functions[logical], env, cfn_template["Resources"].get(logical, {}),
                                    physical),
            endpoint_url=functions_endpoint, log_sink=sink,
            max_environments=int(config.get("ReservedConcurrentExecutions")
                                 or lambda_runtime.DEFAULT_MAX_ENVIRONMENTS))
        sink.groups[fn.name] = fn.config.log_group
        moto_adapters.LOCAL_FUNCTIONS[fn.arn] = fn
        functions[fn.name] = fn

    tap = _create_event_tap(session, endpoint_url, outputs.get("EventBusName", "default"), stack_name, region)
    return LocalStack(session=session, outputs=outputs, functions=functions, tap_queue_url=tap,
                      endpoint_url=endpoint_url, name=stack_name, region=region)


ACCOUNT = "123456789012"  # moto's default account: what the dummy credentials map to


def _function_config(config: dict[str, Any], sam: dict[str, Any], env: dict[str, str],
                     translated: dict[str, Any], physical: dict[str, str]) -> lambda_runtime.FunctionConfig:
    """The deployed configuration, and from the template what moto does not keep: the code folder, the
    log group and format (LoggingConfig)."""
    logging_config = translated.get("Properties", {}).get("LoggingConfig", {})
    log_group = logging_config.get("LogGroup")
    if isinstance(log_group, dict) and "Ref" in log_group:
        log_group = physical.get(log_group["Ref"])
    return lambda_runtime.FunctionConfig(
        name=config["FunctionName"], arn=config["FunctionArn"], code_dir=(project.ROOT / sam["CodeUri"]).resolve(),
        handler=config["Handler"], environment=env, timeout=float(config.get("Timeout") or 3),
        memory_mb=int(config.get("MemorySize") or 128),
        log_group=log_group if isinstance(log_group, str) else "",
        log_format=str(logging_config.get("LogFormat", "Text")))


def _create_event_tap(session: Any, endpoint_url: str | None, bus: str, stack_name: str, region: str) -> str:
    """An SQS queue receiving every routing.manager event: what a downstream consumer would see."""
    sqs = session.client("sqs", region_name=region, endpoint_url=endpoint_url)
    events = session.client("events", region_name=region, endpoint_url=endpoint_url)
    name = TAP_QUEUE if stack_name == STACK_NAME else f"{stack_name}-event-tap"
    url: str = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="routing-manager-event-tap", EventBusName=bus,
                    EventPattern=json.dumps({"source": ["routing.manager"]}))
    events.put_targets(Rule="routing-manager-event-tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
    return url


_IN_PROCESS_SERVER: dict[str, str] = {}



def _quick_stop_server(**kwargs: Any) -> Any:
    """moto's threaded server, stopped in 50 ms rather than the 0.5 s of socketserver's default poll
    (every block of mocked_aws paid it: a tenth of the unit suite)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class QuickStop(ThreadedMotoServer):
        def _server_entry(self) -> None:
            self._server = make_server(self._ip_address, self._port, DomainDispatcherApplication(create_backend_app),
                                       True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever(poll_interval=0.05)

    return QuickStop(**kwargs)


@contextlib.contextmanager
def mocked_aws() -> Iterator[None]:
    """moto's in-process AWS with the interpreter on, and dummy credentials, for the block."""
    from moto import mock_aws

    env = {"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            # The functions' processes reach the same in-process moto over HTTP (a server shares its backends).
            server = _quick_stop_server(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            _IN_PROCESS_SERVER["endpoint"] = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
            try:
                yield
            finally:
                _IN_PROCESS_SERVER.pop("endpoint", None)
                server.stop()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def deploy_unique(parameters: dict[str, str] | None = None,
                  function_environment: dict[str, str] | None = None, region: str = REGION) -> LocalStack:
    """Another stack beside the others in the same moto (own name, own Jobs-{Stage} table)."""
    import boto3

    suffix = uuid.uuid4().hex[:8]
    bus = f"routing-{suffix}"  # its own bus, or every stack's rule would start an execution per event
    boto3.client("events", region_name=region).create_event_bus(Name=bus)
    return deploy(parameters={"Stage": f"t{suffix}", "EventBusName": bus, **(parameters or {})},
                  stack_name=f"{STACK_NAME}-{suffix}", function_environment=function_environment, region=region)


@contextlib.contextmanager
def running(parameters: dict[str, str] | None = None, function_environment: dict[str, str] | None = None,
            echo_logs: Callable[[str], None] | None = None) -> Iterator[LocalStack]:
    """An in-process local stack for the duration of the block (`function_environment` and `echo_logs`
    as for deploy())."""
    with mocked_aws():
        stack = deploy(parameters=parameters, function_environment=function_environment, echo_logs=echo_logs)
        try:
            yield stack
        finally:
            release(stack)


def release(stack: LocalStack) -> None:
    """Stop the stack's functions: every execution environment's process ends."""
    for fn in stack.functions.values():
        moto_adapters.LOCAL_FUNCTIONS.pop(fn.arn, None)
        fn.shutdown()


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
                        already: set[str] | None = None, stop: threading.Event | None = None,
                        machine: str | None = None) -> list[Execution]:
    """Wait until `expected` new executions (not in `already`) of `machine` (the single-job workflow
    unless told) have ended; never hangs: after `timeout`, or once `stop` is set, the ones still
    running are returned with status RUNNING.

    Polls at a growing interval: executions run in this process's threads and need the GIL."""
    deadline = time.monotonic() + timeout
    already = already or set()
    interval = 0.02
    while True:
        statuses = moto_adapters.execution_statuses(machine or stack.state_machine_arn)
        fresh = {arn: status for arn, status in statuses.items() if arn not in already}
        ended = len(fresh) >= expected and "RUNNING" not in fresh.values()
        if ended or time.monotonic() > deadline or (stop is not None and stop.is_set()):
            return [describe_execution(arn) for arn in fresh]
        if stop is not None:
            stop.wait(interval)
        else:
            time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def execution_arns(stack: LocalStack, machine: str | None = None) -> set[str]:
    return set(moto_adapters.execution_statuses(machine or stack.state_machine_arn))


def describe_execution(arn: str) -> Execution:
    desc, history = moto_adapters.read_execution(arn)
    path = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    output = json.loads(desc["output"]) if desc.get("output") else None
    return Execution(arn=arn, status=desc["status"], input=json.loads(desc.get("input") or "{}"),
                     error=desc.get("error"), cause=desc.get("cause"), path=path,
                     output=output if isinstance(output, dict) else None,
                     start=desc["startDate"].timestamp(),
                     stop=desc["stopDate"].timestamp() if desc.get("stopDate") else None)
