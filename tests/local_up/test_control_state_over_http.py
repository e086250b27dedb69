"""A control table that cannot be read fails loud: deleted under a running `local up`, the rules
function says so in its decisions and logs, its metric raises the alarm, and the canary fails."""

from __future__ import annotations

from tests.local_up.conftest import LocalUp, job, until

STACK = "routing-manager-local"


def alarm_state(up: LocalUp, name: str) -> str:
    alarms = up.aws("cloudwatch", "describe-alarms", "--alarm-names", f"{STACK}-{name}")["MetricAlarms"]
    return str(alarms[0]["StateValue"])


def test_an_unreadable_control_table_raises_the_alarm_and_fails_the_canary(up: LocalUp) -> None:
    assert up.run(job())["status"] == "ROUTED"
    error, beat = up.heartbeat()
    assert error is None and beat["heartbeat"] == 1

    up.aws("dynamodb", "delete-table", "--table-name", up.outputs["ProviderStateTableName"])
    # Jobs still route (on the last state read), but never in silence.
    until(lambda: up.run(job())["status"] == "ROUTED" and alarm_state(up, "control-state-unreadable") == "ALARM",
          60, "the control-state alarm")

    def canary_failure() -> str:
        error, answer = up.heartbeat()
        return str(answer.get("errorMessage", "")) if error else ""

    message = until(canary_failure, 30, "the heartbeat canary to fail")
    assert "stale provider state" in message or "unread provider state" in message, message
    until(lambda: alarm_state(up, "heartbeat-failing") == "ALARM", 30, "the heartbeat-failing alarm")

    logs = up.client("logs")
    group = next(g["logGroupName"] for g in logs.describe_log_groups()["logGroups"] if "RulesFunction" in
                 g["logGroupName"])
    lines = [e["message"] for e in logs.filter_log_events(logGroupName=group, filterPattern="not read")["events"]]
    assert any("ResourceNotFoundException" in line and "kill switches, breakers and budgets may be ignored" in line
               for line in lines), lines
