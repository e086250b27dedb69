"""What a frontend gets from `pip install .` without extras: the publisher, explain and replay, and
none of the local stack's or the pictures' dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from routing_manager import project


@pytest.mark.slow
def test_the_package_without_extras_publishes_explains_and_replays(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                              "-c", str(project.ROOT / "constraints.txt"), str(project.ROOT)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    absent = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import importlib.util as u; print([m for m in ('moto', 'samtranslator', 'matplotlib')"
                             " if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert absent.stdout.strip() == "[]"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(venv / "bin" / "routing-manager"), *args], capture_output=True, text=True,
                              timeout=120, cwd=project.ROOT)

    for command in (["publish", "-h"], ["replay", "-h"]):
        assert cli(*command).returncode == 0, command
    explained = cli("explain", "--json", "events/routed-fal.json")
    assert explained.returncode == 0 and '"provider": "fal"' in explained.stdout, explained.stderr
    local = cli("local", "run", "events/routed-fal.json")
    assert local.returncode == 1
    assert "needs the [local] extra" in local.stderr and "Traceback" not in local.stderr
