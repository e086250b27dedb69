"""The names the ASL, the template, the routing table and the CLI share agree with each other."""

from __future__ import annotations

import json
import re
from typing import Any

from routing_core.loading import load_table
from routing_core.reasons import REASON_CODES

from routing_manager import project
from routing_manager.local import runner


def _asl() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(project.ASL.read_text())
    return result


def test_every_reason_the_workflow_writes_is_a_documented_code() -> None:
    text = project.ASL.read_text()
    written = set(re.findall(r"States\.Format\('([a-z_]+:)\{\}'", text)) - {"emit_error:"}  # emitError, not a reason
    literal = {state["Result"]["decision"]["reason"] for state in _asl()["States"].values()
               if "decision" in state.get("Result", {})}
    codes = set(REASON_CODES)
    assert written and all(any(code.startswith(prefix) for code in codes) for prefix in written), written
    assert literal <= {c.replace("{field}", "jobId") for c in codes}, literal


def test_every_provider_has_its_queue_url_and_its_queue_in_the_send_permission(sam: dict[str, Any]) -> None:
    table = load_table(project.RULES_FUNCTION / "routing_table.json")
    environment = sam["Resources"]["RulesFunction"]["Properties"]["Environment"]["Variables"]
    [statement] = [s for p in sam["Resources"]["RoutingStateMachine"]["Properties"]["Policies"]
                   for s in p["Statement"] if s.get("Sid") == "EnqueueOnProviderQueuesAndFailureQueue"]
    queues = {queue["queueUrlEnv"]: name for name, provider in table["providers"].items()
              for queue in (provider, *provider.get("regions", {}).values())}  # a provider region's own queue too
    for variable, name in queues.items():
        assert variable in environment, name
        parameter = environment[variable]["Fn::If"][2]["Ref"]  # the existing-queue parameter
        assert parameter in json.dumps(statement["Resource"]), f"{name}: {parameter} not in the SendMessage statement"
    assert len(statement["Resource"]) == len(queues) + 1  # and the failure queue


def test_every_state_the_cli_names_exists() -> None:
    states = set(_asl()["States"])
    assert set(runner.ENDINGS) | runner.FAIL_STATES <= states
    assert {s for s, state in _asl()["States"].items() if state["Type"] in ("Succeed", "Fail")} <= set(runner.ENDINGS)


def test_names_reach_the_asl_through_substitutions(sam: dict[str, Any]) -> None:
    substitutions = sam["Resources"]["RoutingStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert (substitutions["RouterSource"], substitutions["MetricsNamespace"]) == ("routing.manager", "VideoJobRouting")
    text = project.ASL.read_text()
    assert "routing.manager" not in text and "VideoJobRouting" not in text  # only the placeholders
