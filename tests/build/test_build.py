"""`make build` on a host without python3.12 or Docker, the artifacts it makes, and `sam package`
against the local stack's S3: the deploy path as far as it goes offline."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from routing_manager import project

pytestmark = pytest.mark.slow

SAM_BIN = project.ROOT / ".venv-tools" / "sam" / "bin"
LAMBDA_LIMIT_BYTES = 250 * 1024 * 1024  # unzipped, function and layers (Lambda quotas page)
FUNCTIONS = {"RulesFunction": "app.py", "ProviderEventsFunction": "provider_events.py",
             "HeartbeatFunction": "app.py", "QualityModelFunction": "app.py"}
DEV_ONLY = ("moto", "pytest", "hypothesis", "boto3", "botocore", "awslambdaric", "samtranslator")


def _path_without_python312() -> str:
    """This host's PATH less every folder with a python3.12 (pyenv's shims name it even when absent)."""
    kept = [folder for folder in os.environ.get("PATH", "").split(os.pathsep)
            if folder and "pyenv" not in folder and not (Path(folder) / "python3.12").exists()]
    path = os.pathsep.join([str(SAM_BIN), *kept])
    assert shutil.which("python3.12", path=path) is None
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("build")
    env = {**os.environ, "PATH": _path_without_python312(), "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(["make", "build", f"BUILD_DIR={folder}"], cwd=project.ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder


def test_native_extensions_are_for_lambdas_python_and_arm64(built: Path) -> None:
    extensions = list(built.rglob("*.so"))
    assert extensions, "pydantic_core ships a native extension: none was built"
    for extension in extensions:
        tag = extension.name.split(".")[1] if extension.name.count(".") >= 2 else ""
        assert tag in ("cpython-312-aarch64-linux-gnu", "abi3"), extension
        assert "x86_64" not in extension.name and "cpython-311" not in extension.name, extension


def test_each_function_holds_its_code_and_no_dev_dependency(built: Path) -> None:
    for function, handler in FUNCTIONS.items():
        root = built / function
        assert (root / handler).is_file(), function
        if function not in ("HeartbeatFunction", "QualityModelFunction"):
            assert (root / "routing_core" / "engine.py").is_file() and (root / "routing_table.lock.json").is_file()
            assert (root / "aws_lambda_powertools").is_dir() and (root / "pydantic_core").is_dir()
        present = {p.name.split("-")[0].lower() for p in root.iterdir()}
        assert not present & set(DEV_ONLY), (function, present & set(DEV_ONLY))
        assert not (root / "tests").exists() and not list(root.rglob("__pycache__")), function  # only what runs
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        print(f"{function}: {size / 1e6:.1f} MB unzipped (Lambda's limit: 250 MB)")
        assert size < LAMBDA_LIMIT_BYTES


def test_sam_validate_lint_passes_on_the_built_template(built: Path) -> None:
    result = subprocess.run([str(SAM_BIN / "sam"), "validate", "--lint", "-t", str(built / "template.yaml")],
                            capture_output=True, text=True, env={**os.environ, "SAM_CLI_TELEMETRY": "0"}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def local_up() -> Iterator[str]:
    process = subprocess.Popen([str(Path(sys.executable).parent / "routing-manager"), "local", "up", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=project.ROOT)
    try:
        assert process.stdout is not None
        yield str(json.loads(process.stdout.readline())["endpoint"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()


@pytest.mark.local_stack
def test_sam_package_uploads_every_function_to_the_local_stacks_s3(built: Path, local_up: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=local_up, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="artifacts")
    packaged = tmp_path / "packaged.yaml"
    result = subprocess.run([str(SAM_BIN / "sam"), "package", "--template-file", str(built / "template.yaml"),
                             "--s3-bucket", "artifacts", "--output-template-file", str(packaged)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, **credentials, "AWS_ENDPOINT_URL": local_up, "SAM_CLI_TELEMETRY": "0"})
    assert result.returncode == 0, result.stdout + result.stderr

    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    from routing_manager.local.stack import _NoManagedPolicies

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # samtranslator builds ARNs with it
    sam: dict[str, Any] = yaml_parse(packaged.read_text())
    assert transform(sam, {}, _NoManagedPolicies())["Resources"]
    lint = subprocess.run([str(SAM_BIN / "cfn-lint"), str(packaged)], capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for function, handler in FUNCTIONS.items():
        uri = sam["Resources"][function]["Properties"]["CodeUri"]
        assert uri.startswith("s3://artifacts/"), (function, uri)
        body = s3.get_object(Bucket="artifacts", Key=uri.removeprefix("s3://artifacts/"))["Body"].read()
        names = zipfile.ZipFile(io.BytesIO(body)).namelist()
        assert handler in names, function
        if function not in ("HeartbeatFunction", "QualityModelFunction"):
            assert "routing_core/engine.py" in names and any(n.startswith("pydantic_core/") for n in names)
