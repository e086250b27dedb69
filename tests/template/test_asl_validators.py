"""The ASL checked by validators independent of moto: AWS's own language service (the one the AWS
Toolkit runs in the editor) and asl-validator, both from npm (tools/asl, installed by `make setup`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from routing_manager import project

VALIDATE = project.ROOT / "tools" / "asl" / "validate.js"
INSTALLED = project.ROOT / "tools" / "asl" / "node_modules" / "asl-validator"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the ASL validators run on node"),
    pytest.mark.skipif(not INSTALLED.exists(), reason="tools/asl/node_modules is missing: run `make setup`"),
]


def validate(path: Path) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(["node", str(VALIDATE), str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_the_workflow_passes_both_validators() -> None:
    code, report = validate(project.ASL)
    assert (code, report["languageService"], report["aslValidator"]) == (0, [], [])


def test_the_validators_catch_a_broken_definition(tmp_path: Path) -> None:
    definition = json.loads(project.ASL.read_text())
    definition["States"]["CheckJobId"]["Default"] = "NoSuchState"
    definition["States"]["ClaimJob"]["Retry"][1]["BackoffRate"] = "twice"
    broken = tmp_path / "broken.asl.json"
    broken.write_text(json.dumps(definition))
    code, report = validate(broken)
    assert code == 1
    assert any("existing state" in message for message in report["languageService"])
    assert any("BackoffRate" in message for message in report["aslValidator"])
