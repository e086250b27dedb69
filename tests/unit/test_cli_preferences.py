"""Job preferences through the CLI: explain names each filter, table show the policies and splits, publish
refuses what the router would reject as invalid_routing, before sending anything."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from routing_manager import project
from routing_manager.cli import app

runner = CliRunner()
JOB = {"jobId": "j", "userId": "u", "prompt": "p", "lengthSec": 8, "resolution": "720p"}


def write(tmp_path: Path, detail: dict[str, object]) -> str:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(detail))
    return str(path)


def test_sample_events_with_preferences_decide_as_named() -> None:
    expected = {"routed-with-preferences.json": ("route", "replicate", None, 0.6664),
                "rejected-over-max-price.json": ("reject", None, "over_max_price", 0.64),
                "rejected-preferences-unsatisfiable.json": ("reject", None, "preferences_unsatisfiable", None),
                "rejected-invalid-routing.json": ("reject", None, "invalid_routing", None)}
    for name, want in expected.items():
        result = runner.invoke(app, ["explain", "--json", str(project.EVENTS / name)])
        d = json.loads(result.stdout)
        assert (d["outcome"], d["provider"], d["reason"], d["quoteUsd"]) == want, name


def test_explain_shows_filters_and_what_dropped_each_candidate(tmp_path: Path) -> None:
    path = write(tmp_path, {**JOB, "routing": {"only": ["replicate"], "maxPriceUsd": 0.5}})
    result = runner.invoke(app, ["explain", path], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "filters: rule > limits > only > maxPrice" in result.stdout
    assert "fal/wan-i2v $0.64: dropped by only: not in the job's routing.only" in result.stdout
    assert "dropped by maxPrice: quote $0.6664 > the job's maxPriceUsd $0.5" in result.stdout


def test_table_show_prints_data_policies_and_splits(tmp_path: Path) -> None:
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    table["rules"].append({"name": "hd", "when": {"resolution": ["1080p"]},
                           "split": [{"provider": "replicate", "weight": 3}, {"provider": "fal", "weight": 1}]})
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    result = runner.invoke(app, ["table", "show", str(path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "split: replicate/minimax/video-01 75% | fal/wan-i2v 25%" in result.stdout
    assert "neither retains nor trains on inputs" in result.stdout and "retains inputs (source:" in result.stdout
    shown = json.loads(runner.invoke(app, ["table", "show", "--json", str(path)]).stdout)
    assert shown["rules"][-1]["split"][0] == {"provider": "replicate", "model": None, "weight": 3}
    assert shown["providers"]["replicate"]["dataPolicy"]["retainsInputs"] is False


def test_table_show_refuses_a_bad_table_in_one_line(tmp_path: Path) -> None:
    table = json.loads((project.RULES_FUNCTION / "routing_table.json").read_text())
    table["rules"][0] = {"name": "s", "when": {}, "split": [{"provider": "fal", "weight": 0}]}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    result = runner.invoke(app, ["table", "show", str(path)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "split weights sum to 0" in result.stderr
    assert result.stderr.startswith("error: ")


def test_publish_refuses_bad_preferences_before_sending(tmp_path: Path) -> None:
    for routing, message in ((({"order": ["runway"]}), "invalid_routing: routing.order[0]: unknown provider"),
                             ({"sort": "speed"}, "routing.sort: Input should be 'price'"),
                             ({"maxPriceUsd": -1}, "routing.maxPriceUsd: Input should be greater than 0"),
                             ({"regions": ["ap-south-1"]}, "invalid_routing: routing.regions[0]: no provider serves "
                                                           "from ap-south-1 (known: eu-west-1, us-east-1)"),
                             ({"residency": "asia"}, "routing.residency: Input should be 'eu' or 'us'")):
        path = write(tmp_path, {**JOB, "routing": routing})
        result = runner.invoke(app, ["publish", path, "--endpoint-url", "http://127.0.0.1:9"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert "0 sent, 1 invalid" in result.output


def test_publish_accepts_the_regions_the_bundled_table_lists() -> None:
    from routing_manager.publish import validation_error

    assert validation_error({**JOB, "routing": {"regions": ["eu-west-1"], "residency": "eu"}}) is None
