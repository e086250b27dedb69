"""The two-region resources (issue 26, item 7) are absent from a default deploy, created by the primary
region's stack alone when the parameters are set, and refused half set (the template's Rules)."""

from __future__ import annotations

from typing import Any

import pytest

TWO_REGION_RESOURCES = {"JobsGlobalTable", "PrimaryRegionEventLatencyAlarm", "PrimaryRegionHealthCheck",
                        "GlobalEndpointReplicationRole", "GlobalEndpoint"}
TWO_REGIONS = {"PrimaryRegion": "us-east-1", "SecondaryRegion": "us-west-2", "WitnessRegion": "us-east-2",
               "JobsTableName": "Jobs-prod-global"}


def _evaluate(value: Any, template: dict[str, Any], parameters: dict[str, str], region: str) -> Any:
    """The condition functions CloudFormation evaluates at deploy time (and in Rules), on given values."""
    if isinstance(value, dict) and len(value) == 1:
        [(name, args)] = value.items()
        if name == "Ref":
            if args == "AWS::Region":
                return region
            return parameters.get(args, str(template["Parameters"][args].get("Default", "")))
        if name == "Condition":
            return _evaluate(template["Conditions"][args], template, parameters, region)
        values = [_evaluate(arg, template, parameters, region) for arg in args] if isinstance(args, list) else []
        if name == "Fn::Equals":
            return str(values[0]) == str(values[1])
        if name == "Fn::Not":
            return not values[0]
        if name == "Fn::And":
            return all(values)
        if name == "Fn::Or":
            return any(values)
    return value


def _created(sam: dict[str, Any], parameters: dict[str, str], region: str = "us-east-1") -> set[str]:
    return {name for name, resource in sam["Resources"].items()
            if "Condition" not in resource or _evaluate({"Condition": resource["Condition"]}, sam, parameters, region)}


def _refused_by(sam: dict[str, Any], parameters: dict[str, str], region: str = "us-east-1") -> set[str]:
    """The Rules whose assertions a deploy with these parameters fails."""
    return {name for name, rule in sam["Rules"].items()
            if _evaluate(rule.get("RuleCondition", True), sam, parameters, region)
            and not all(_evaluate(a["Assert"], sam, parameters, region) for a in rule["Assertions"])}


def test_a_default_deploy_creates_none_of_them_and_its_own_jobs_table(sam: dict[str, Any]) -> None:
    created = _created(sam, {})
    assert not created & TWO_REGION_RESOURCES
    assert "JobsTable" in created
    assert not _refused_by(sam, {})
    assert all(sam["Outputs"][name]["Condition"] == "CreatesTheGlobalResources"
               for name in ("GlobalEndpointId", "GlobalEndpointUrl"))


def test_the_primary_regions_stack_creates_them_and_the_secondarys_uses_them(sam: dict[str, Any]) -> None:
    primary, secondary = _created(sam, TWO_REGIONS, "us-east-1"), _created(sam, TWO_REGIONS, "us-west-2")
    assert primary >= TWO_REGION_RESOURCES
    assert not secondary & TWO_REGION_RESOURCES
    # Neither creates a table of its own: both reach their region's replica by the shared name.
    assert "JobsTable" not in primary | secondary
    assert not _refused_by(sam, TWO_REGIONS, "us-east-1")
    without_replication = _created(sam, {**TWO_REGIONS, "GlobalEndpointReplication": "DISABLED"})
    assert TWO_REGION_RESOURCES - without_replication == {"GlobalEndpointReplicationRole"}


@pytest.mark.parametrize(("parameters", "rule"), [
    ({**TWO_REGIONS, "PrimaryRegion": ""}, "TwoRegionsAreNamedTogether"),
    ({**TWO_REGIONS, "SecondaryRegion": "us-east-1"}, "TwoRegionsAreNamedTogether"),
    ({**TWO_REGIONS, "JobsTableName": ""}, "TwoRegionsAreNamedTogether"),
    ({**TWO_REGIONS, "WitnessRegion": ""}, "StrongClaimsHaveAWitness"),
    ({**TWO_REGIONS, "WitnessRegion": "us-west-2"}, "StrongClaimsHaveAWitness"),
    ({**TWO_REGIONS, "JobsTableConsistency": "EVENTUAL"}, "EventualClaimsHaveNoWitness"),
], ids=["no-primary", "same-regions", "no-table-name", "strong-without-witness", "witness-is-a-replica",
        "eventual-with-witness"])
def test_a_half_set_deployment_is_refused(sam: dict[str, Any], parameters: dict[str, str], rule: str) -> None:
    assert _refused_by(sam, parameters) == {rule}


def test_the_global_table_is_the_jobs_table_replicated(sam: dict[str, Any]) -> None:
    jobs, global_table = sam["Resources"]["JobsTable"]["Properties"], sam["Resources"]["JobsGlobalTable"]["Properties"]
    for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode"):
        assert global_table[key] == jobs[key], key
    assert sam["Resources"]["JobsGlobalTable"]["DeletionPolicy"] == "Retain"
    assert global_table["TableName"] == {"Ref": "JobsTableName"}
    assert global_table["MultiRegionConsistency"] == {"Ref": "JobsTableConsistency"}
    assert sam["Parameters"]["JobsTableConsistency"]["Default"] == "STRONG"
    assert global_table["GlobalTableWitnesses"] == {
        "Fn::If": ["ClaimsStronglyConsistent", [{"Region": {"Ref": "WitnessRegion"}}], {"Ref": "AWS::NoValue"}]}
    assert [r["Region"] for r in global_table["Replicas"]] == [{"Ref": "PrimaryRegion"}, {"Ref": "SecondaryRegion"}]
    assert all(r["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] for r in global_table["Replicas"])


def test_the_global_endpoint_fails_over_between_the_two_buses_on_the_health_check(sam: dict[str, Any]) -> None:
    endpoint = sam["Resources"]["GlobalEndpoint"]["Properties"]
    buses = [b["EventBusArn"]["Fn::Sub"] for b in endpoint["EventBuses"]]
    assert buses == [f"arn:${{AWS::Partition}}:events:${{{r}}}:${{AWS::AccountId}}:event-bus/${{EventBusName}}"
                     for r in ("PrimaryRegion", "SecondaryRegion")]
    failover = endpoint["RoutingConfig"]["FailoverConfig"]
    assert failover["Secondary"]["Route"] == {"Ref": "SecondaryRegion"}
    assert "${PrimaryRegionHealthCheck}" in failover["Primary"]["HealthCheck"]["Fn::Sub"]
    assert endpoint["ReplicationConfig"]["State"] == {"Ref": "GlobalEndpointReplication"}
    assert sam["Parameters"]["GlobalEndpointReplication"]["Default"] == "ENABLED"
    check = sam["Resources"]["PrimaryRegionHealthCheck"]["Properties"]["HealthCheckConfig"]
    assert (check["Type"], check["AlarmIdentifier"]["Name"]) == ("CLOUDWATCH_METRIC",
                                                               {"Ref": "PrimaryRegionEventLatencyAlarm"})
    alarm = sam["Resources"]["PrimaryRegionEventLatencyAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["TreatMissingData"]) == (
        "AWS/Events", "IngestionToInvocationStartLatency", "breaching")
