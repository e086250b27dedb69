"""The whole alarm-gated rollback on `local up`, with no drill: a canary version that rejects the jobs it
decides feeds `TableDecisions`, the stack's `canary-rejections` alarm evaluates to ALARM by itself (the
local stack evaluates metric math as CloudWatch does), and the canary ends. A stack of its own: the
alarm reads five minutes of canary decisions, which another module's canaries would dilute."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from routing_core.rollout import canary_bucket

from tests.local_up.conftest import LocalUp, job, start_local_up, tuned_table, until


def _rejects_short_720p(table: dict[str, Any]) -> None:
    """Short 720p jobs only to Replicate, which (in this version) takes nothing over 4 s: `no_route`."""
    table["rules"][0]["route"] = [{"provider": "replicate"}]
    table["providers"]["replicate"]["limits"]["maxLengthSec"] = 4


@pytest.fixture(scope="module")
def up() -> Iterator[LocalUp]:
    yield from start_local_up()


def test_a_canary_that_rejects_is_ended_by_its_own_alarm(up: LocalUp, tmp_path_factory: pytest.TempPathFactory
                                                         ) -> None:
    path = tuned_table(tmp_path_factory.mktemp("bad"), _rejects_short_720p)
    version = json.loads(up.cli("table", "publish", str(path), "--json").stdout)["version"]
    [alarm] = [a["AlarmName"] for a in up.aws("cloudwatch", "describe-alarms")["MetricAlarms"]
               if a["AlarmName"].endswith("-canary-rejections")]
    up.cli("table", "canary", str(version), "--percent", "50", "--rollback-on", alarm)

    events = up.client("events")
    records: list[dict[str, Any]] = []

    def ended_by_the_alarm() -> dict[str, Any] | None:
        """One more job, then the announcement of the canary's end, if it came."""
        detail = job()
        events.put_events(Entries=[{"Source": "frontend.api", "DetailType": "video.job.submitted",
                                    "Detail": json.dumps(detail)}])
        records.append(up.outcome(detail["jobId"]))
        return next((e["detail"] for e in up.events() if e["detail-type"] == "routing.table.changed"
                     and e["detail"]["by"] == "alarm"), None)

    ended = until(ended_by_the_alarm, 90, "the alarm ending the canary")
    assert (ended["version"], ended["mode"], ended["reason"]) == (version, "canary_ended", f"{alarm} in ALARM")
    rejected = [r for r in records if (r["status"], r["tableVersion"]) == ("REJECTED", version)]
    assert len(rejected) >= 5  # the alarm's floor: it waited for evidence
    assert all(r["rejectionReason"] == "no_route" for r in rejected)
    assert up.aws("cloudwatch", "describe-alarms", "--alarm-names", alarm)["MetricAlarms"][0]["StateValue"] == "ALARM"
    assert json.loads(up.cli("table", "status", "--json").stdout)["canary"] is None

    def in_the_canary_share() -> dict[str, Any]:
        while canary_bucket((detail := job())["jobId"]) >= 50:
            pass
        return detail

    until(lambda: (r := up.run(in_the_canary_share()))["status"] == "ROUTED" and r["tableVersion"] == 0, 30,
          "the canary's share decided by the active version again")
