"""Security, proven on the template AWS would deploy: least privilege, scanners, encryption,
no prompt in logs, and only frontend.api gets in."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from routing_manager import project
from routing_manager.local.stack import load_template, translate

TOOLS = project.ROOT / ".venv-tools"
TOOLS_REASON = "scanners live in .venv-tools (run `make setup`); `make test` always installs them"

# Actions AWS does not scope to a resource: the only ones allowed on "*", each for its reason.
STAR_ALLOWED = {
    "cloudwatch:PutMetricData": "no resource-level permissions; every grant is conditioned on the namespace",
    **{f"logs:{a}": "log delivery APIs have no resource-level permissions" for a in (
        "CreateLogDelivery", "GetLogDelivery", "UpdateLogDelivery", "DeleteLogDelivery", "ListLogDeliveries",
        "PutResourcePolicy", "DescribeResourcePolicies", "DescribeLogGroups")},
}

EXPECTED_ACTIONS = {
    # Reads the provider states, claims probes, charges budgets, reads published tables and records
    # shadow disagreements, each in its own partition (see the next test).
    "RulesFunctionRole": {"dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:PutItem"},
    "ProviderEventsFunctionRole": {"dynamodb:Query", "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem",
                                   "events:PutEvents"},
    "HeartbeatFunctionRole": {"lambda:InvokeFunction", "dynamodb:GetItem", "cloudwatch:PutMetricData"},
    "QualityModelFunctionRole": {"dynamodb:Query", "dynamodb:PutItem"},
    "RoutingStateMachineRole": {"dynamodb:UpdateItem", "dynamodb:GetItem", "lambda:InvokeFunction", "sqs:SendMessage",
                                "events:PutEvents", "cloudwatch:PutMetricData", *(a for a in STAR_ALLOWED
                                                                                  if a.startswith("logs:"))},
    "RoutingStateMachineJobSubmittedRole": {"states:StartExecution"},
    # Batches: no GetItem (no credit balance is read) and no PutMetricData (the summary event counts).
    "BatchRoutingStateMachineRole": {"dynamodb:UpdateItem", "lambda:InvokeFunction", "sqs:SendMessage",
                                     "events:PutEvents", *(a for a in STAR_ALLOWED if a.startswith("logs:"))},
    "BatchRoutingStateMachineBatchSubmittedRole": {"states:StartExecution"},
    # Two regions: the global endpoint puts each submission on the other region's bus too.
    "GlobalEndpointReplicationRole": {"events:PutEvents"},
}
MANAGED_ALLOWED = {"arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                   "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    template = translate(packaged=True)
    path = tmp_path_factory.mktemp("t") / "packaged.json"
    path.write_text(json.dumps(template))
    return template, path


def _statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    statements = policy["PolicyDocument"]["Statement"]
    for statement in statements if isinstance(statements, list) else [statements]:
        if "Fn::If" in statement:  # conditional statement: check both branches
            found += [s for s in statement["Fn::If"][1:] if isinstance(s, dict) and "Action" in s]
        else:
            found.append(statement)
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_each_role_has_only_the_actions_it_uses(packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    roles = {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert set(roles) == set(EXPECTED_ACTIONS)
    for name, role in roles.items():
        assert set(role.get("ManagedPolicyArns", [])) <= MANAGED_ALLOWED, name
        actions = {a for p in role.get("Policies", []) for s in _statements(p) for a in _as_list(s["Action"])}
        assert actions == EXPECTED_ACTIONS[name], name


def test_the_rules_function_touches_each_partition_only_as_it_needs(
        packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    statements = [s for p in template["Resources"]["RulesFunctionRole"]["Properties"]["Policies"]
                  for s in _statements(p)]
    assert all(s["Resource"] == {"Fn::GetAtt": ["ProviderStateTable", "Arn"]} for s in statements)
    grants = {(tuple(_as_list(s["Action"])), json.dumps(s["Condition"], sort_keys=True)) for s in statements}
    assert grants == {
        (("dynamodb:Query", "dynamodb:UpdateItem"),
         json.dumps({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["state", "budget"]}})),
        (("dynamodb:GetItem",), json.dumps({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["table"]}})),
        (("dynamodb:UpdateItem",), json.dumps({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["rate"]}})),
        (("dynamodb:Query",), json.dumps({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["stats"]}})),
        (("dynamodb:PutItem",), json.dumps({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["shadow#*"]}})),
    }


def test_the_quality_model_reads_only_segment_statistics_and_writes_only_the_stats_partition(
        packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    statements = [s for p in template["Resources"]["QualityModelFunctionRole"]["Properties"]["Policies"]
                  for s in _statements(p)]
    assert all(s["Resource"] == {"Fn::GetAtt": ["ProviderStateTable", "Arn"]} for s in statements)
    grants = {(tuple(_as_list(s["Action"])), json.dumps(s["Condition"], sort_keys=True)) for s in statements}
    assert grants == {
        (("dynamodb:Query",), json.dumps({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["qstats"]}})),
        (("dynamodb:PutItem",), json.dumps({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["stats"]}})),
    }


def test_star_resources_only_where_aws_requires_them(packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in _statements(policy):
                assert statement["Effect"] == "Allow"
                for resource_arn in _as_list(statement["Resource"]):
                    text = json.dumps(resource_arn)
                    if resource_arn == "*":
                        assert all(a in STAR_ALLOWED for a in _as_list(statement["Action"])), (name, statement)
                        if "cloudwatch:PutMetricData" in _as_list(statement["Action"]):
                            namespace = {"StringEquals": {"cloudwatch:namespace": "VideoJobRouting"}}
                            assert statement["Condition"] == namespace
                    else:
                        assert not text.rstrip('"').endswith("*"), (name, statement)  # no name* wildcards


def test_encryption_at_rest_on_every_queue_and_table_the_template_creates() -> None:
    resources = load_template()["Resources"]
    queues = {k: v for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
    tables = {k: v for k, v in resources.items() if v["Type"] in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")}
    assert queues and tables
    assert all(q["Properties"].get("SqsManagedSseEnabled") or q["Properties"].get("KmsMasterKeyId")
               for q in queues.values())
    assert all(t["Properties"]["SSESpecification"]["SSEEnabled"] for t in tables.values())


def test_only_frontend_api_submissions_start_the_workflow(packaged: tuple[dict[str, Any], Path]) -> None:
    template, _ = packaged
    rule = template["Resources"]["RoutingStateMachineJobSubmitted"]["Properties"]
    assert rule["EventPattern"] == {"source": ["frontend.api"], "detail-type": ["video.job.submitted"]}
    machine = template["Resources"]["RoutingStateMachine"]["Properties"]
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is False


@pytest.mark.slow
@pytest.mark.skipif(not (TOOLS / "checkov" / "bin" / "checkov").exists(), reason=TOOLS_REASON)
@pytest.mark.parametrize("which", ["sam", "translated"])
def test_checkov_passes_with_every_skip_justified(which: str, packaged: tuple[dict[str, Any], Path]) -> None:
    target = project.TEMPLATE if which == "sam" else packaged[1]
    frameworks = ["serverless", "cloudformation"] if which == "sam" else ["cloudformation"]
    result = subprocess.run(
        [str(TOOLS / "checkov" / "bin" / "checkov"), "-f", str(target), "--framework", *frameworks,
         "--skip-download", "-o", "json"],  # not --quiet: it drops the skipped checks
        capture_output=True, text=True, timeout=300, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    reports = json.loads(result.stdout)
    for report in reports if isinstance(reports, list) else [reports]:
        results = report["results"]
        assert results["failed_checks"] == [], [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
        assert report["summary"]["skipped"] == len(results["skipped_checks"]) > 0
        for skipped in results["skipped_checks"]:
            assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]
    assert result.returncode == 0, result.stderr[-2000:]


def test_sentinel_prompt_never_reaches_a_log_line(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    """What the functions print goes to their log groups (as on Lambda), and what the stack prints to the
    terminal: neither holds the prompt."""
    from routing_manager.local import stack as local_stack
    from tests.support import job, submit

    sentinel = "SENTINEL-7c1e: my address is 1 Private Lane"
    deployed = local_stack.deploy_unique()
    try:
        deployed.rules.faults[:] = ["TooManyRequestsException"]
        results = submit(deployed, job(prompt=sentinel), job(prompt=sentinel, lengthSec=30),
                         job(prompt=sentinel, provider="<bad>"), job(prompt=sentinel, lengthSec="8"))
        deployed.rules.faults[:] = [RuntimeError("boom")]
        results += submit(deployed, job(prompt=sentinel))
    finally:
        local_stack.release(deployed)
    assert sorted(r.status for r in results) == ["FAILED", "REJECTED", "REJECTED", "REJECTED", "ROUTED"]
    logs = deployed.client("logs")
    logged = capsys.readouterr().out + "\n".join(
        event["message"] for group in logs.describe_log_groups()["logGroups"]
        for event in logs.filter_log_events(logGroupName=group["logGroupName"])["events"])
    assert '"decision":"route"' in logged and '"RoutingAttempts"' in logged  # the Lambda did log, here
    assert sentinel not in logged and "Private Lane" not in logged
