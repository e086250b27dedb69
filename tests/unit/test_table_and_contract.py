"""The routing table's validation errors, its lock, and the generated schemas."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from routing_core import loading
from routing_core.loading import DEFAULT_TABLE, load_table, lock_is_current, write_lock
from routing_core.table import RoutingTableError, validate_table

SOURCE = json.loads(DEFAULT_TABLE.read_text())


def broken(mutate) -> dict:  # type: ignore[no-untyped-def]
    table = copy.deepcopy(SOURCE)
    mutate(table)
    return table


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t["rules"][0]["route"][1].update(provider="fol"),
     "rules[0] (short-720p-to-fal): route[1].provider 'fol' is not a provider (known: fal, replicate)"),
    (lambda t: t["rules"][0]["route"].append({"provider": "fal"}),
     "rules[0] (short-720p-to-fal): route[2] repeats fal/wan-i2v"),
    (lambda t: t["rules"][0].update(route=[]), "rules[0] (short-720p-to-fal).route: List should have at least 1 item"),
    (lambda t: t["providers"]["fal"].update(breaker={"failureRate": 1.5}),
     "providers.fal.breaker.failureRate: Input should be less than or equal to 1"),
    (lambda t: t["providers"]["fal"].update(maxQueueAgeSec=30),
     "providers.fal.maxQueueAgeSec: Input should be greater than or equal to 60"),
    (lambda t: t.update(explicitProvider="loose"), "explicitProvider: Input should be 'strict' or 'preferred'"),
    (lambda t: t["rules"][0]["when"]["lengthSec"].update(max="ten"),
     "rules[0] (short-720p-to-fal).when.lengthSec.max: Input should be a valid number"),
    (lambda t: t["rules"][0]["when"]["lengthSec"].update(min=20),
     "rules[0] (short-720p-to-fal).when.lengthSec: Value error, min 20 is greater than max 10"),
    (lambda t: t["rules"][0]["when"].update(colour="red"),
     "rules[0] (short-720p-to-fal).when.colour: Extra inputs are not permitted"),
    (lambda t: t["providers"]["fal"].pop("queue"), "providers.fal.queue: Field required"),
    (lambda t: t["providers"]["fal"].update(queueUrlEnv="fal-url"), "providers.fal.queueUrlEnv: String should match"),
    (lambda t: t["rules"].append(copy.deepcopy(t["rules"][0])), "rules[1] (short-720p-to-fal): duplicate rule name"),
    (lambda t: t["providers"].update(auto=t["providers"]["fal"]), "provider name 'auto'"),
    (lambda t: t.update(version=2), "version: Input should be 1"),
])
def test_bad_tables_name_the_bad_entry(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RoutingTableError) as info:
        validate_table(broken(mutate), source="table.json")
    assert str(info.value).startswith("table.json: invalid routing table:")
    assert message in str(info.value)


def test_not_json_is_a_clear_error() -> None:
    with pytest.raises(RoutingTableError, match=r"^t.json: not valid JSON: Expecting"):
        validate_table(b"{nope", source="t.json")


def test_shipped_lock_is_current() -> None:
    assert lock_is_current(DEFAULT_TABLE), "routing_table.json changed: run `make lock`"


def test_lock_is_used_only_while_the_source_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "routing_table.json"
    source.write_text(DEFAULT_TABLE.read_text())
    write_lock(source)
    calls: list[str] = []
    import routing_core.table as table_module

    real = table_module.validate_table
    monkeypatch.setattr(table_module, "validate_table", lambda raw, source: calls.append(source) or real(raw, source))
    assert load_table(source)["rules"][0]["name"] == "short-720p-to-fal"
    assert calls == []  # fast path: the lock, no pydantic validation
    edited = broken(lambda t: t["rules"][0].update(name="edited-rule"))
    source.write_text(json.dumps(edited))
    assert load_table(source)["rules"][0]["name"] == "edited-rule"
    assert calls == [str(source)]  # stale lock: validated at load
    source.write_text(json.dumps(broken(lambda t: t["rules"][0]["route"][0].update(provider="nope"))))
    with pytest.raises(RoutingTableError, match=r"route\[0\].provider 'nope'"):
        load_table(source)


def test_a_table_without_lock_is_validated(tmp_path: Path) -> None:
    source = tmp_path / "custom.json"
    source.write_text(json.dumps(SOURCE))
    assert not loading.lock_path(source).exists()
    assert load_table(source)["providers"]["fal"]["limits"]["audio"] is False


def test_checked_in_schemas_match_the_models() -> None:
    from routing_core.contract import json_schemas

    from routing_manager import project

    for name, schema in json_schemas().items():
        path = project.SCHEMAS / f"{name}.schema.json"
        assert json.loads(path.read_text()) == schema, f"{path} drifted: run `make schemas`"


def test_sample_events_validate_against_the_contract_as_intended() -> None:
    from pydantic import ValidationError
    from routing_core.contract import SubmittedJob

    from routing_manager import project
    from routing_manager.events import read_events

    for path in sorted(project.EVENTS.glob("*.json")):
        detail = read_events(path)[0].detail
        try:
            SubmittedJob.model_validate(detail)
            valid = True
        except ValidationError:
            valid = False
        accepted = ("no-route", "unsupported", "over-max-price", "preferences-unsatisfiable")  # the router decides
        assert valid == (path.name.startswith("routed") or any(part in path.name for part in accepted)), path


def test_every_reason_code_is_documented_with_its_kind() -> None:
    from routing_core.reasons import REASON_CODES, is_retryable

    from routing_manager import project

    doc = (project.ROOT / "docs" / "EVENT_SCHEMA.md").read_text()
    for code, (_, retryable) in REASON_CODES.items():
        kind = "retryable" if retryable else "final"
        assert f"| `{code}` | {kind} |" in doc, code
        assert is_retryable(code.replace("{error}", "X")) is retryable


def test_provider_outcome_samples_follow_the_contract() -> None:
    from routing_core.contract import SCHEMAS

    from routing_manager import project

    samples = sorted((project.EVENTS / "provider").glob("*.json"))
    assert len(samples) == 4
    for sample in samples:
        [entry] = json.loads(sample.read_text())
        assert entry["Source"] != "routing.manager"
        SCHEMAS[entry["DetailType"]].model_validate_json(entry["Detail"])
