"""The outcome contract of issue 25: completed gains durationSec (now optional), costUsd and qualityScore;
failed gains durationSec. Older events, the samples in events/provider/, stay valid."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError
from routing_core.contract import JobCompletedDetail, JobFailedDetail

from routing_manager import project

SAMPLES = sorted((project.ROOT / "events" / "provider").glob("*.json"))
SCHEMAS = project.ROOT / "events" / "schemas"
BASE = {"jobId": "j-1", "provider": "fal", "model": "wan-i2v"}


def _model(detail_type: str) -> Any:
    return JobCompletedDetail if detail_type == "video.job.completed" else JobFailedDetail


def _schema(detail_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{detail_type}.schema.json").read_text())


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_outcome_is_valid_for_the_model_and_the_schema(path: Any) -> None:
    [entry] = json.loads(path.read_text())
    detail = json.loads(entry["Detail"])
    _model(entry["DetailType"]).model_validate(detail)
    jsonschema.validate(detail, _schema(entry["DetailType"]))


@pytest.mark.parametrize("detail", [
    {**BASE, "durationSec": 42.5},  # what every invoker sent before issue 25
    BASE,  # an invoker that cannot time the job
    {**BASE, "durationSec": 38.2, "costUsd": 0.61, "qualityScore": 0.82},
    {**BASE, "qualityScore": 0, "costUsd": 0},
    {**BASE, "qualityScore": 1},
])
def test_completed_outcomes_accepted(detail: dict[str, Any]) -> None:
    parsed = JobCompletedDetail.model_validate(detail)
    assert parsed.qualityScore == detail.get("qualityScore")
    jsonschema.validate(detail, _schema("video.job.completed"))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("qualityScore", 1.01, "less than or equal to 1"),
    ("qualityScore", -0.1, "greater than or equal to 0"),
    ("qualityScore", "0.8", "must be a JSON number"),
    ("costUsd", -1, "greater than or equal to 0"),
    ("costUsd", True, "must be a JSON number"),
    ("durationSec", -3, "greater than or equal to 0"),
    ("durationSec", "42", "must be a JSON number"),
])
def test_completed_figures_out_of_range_are_refused(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobCompletedDetail.model_validate({**BASE, field: value})
    [error] = caught.value.errors()
    assert error["loc"] == (field,) and message in error["msg"]


def test_the_schema_refuses_a_quality_over_one_as_the_model_does() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**BASE, "qualityScore": 1.5}, _schema("video.job.completed"))


def test_failed_gains_an_optional_duration() -> None:
    old = {**BASE, "errorType": "timeout"}
    assert JobFailedDetail.model_validate(old).durationSec is None
    assert JobFailedDetail.model_validate({**old, "durationSec": 900}).durationSec == 900
    jsonschema.validate({**old, "durationSec": 900}, _schema("video.job.failed"))
    with pytest.raises(ValidationError, match="must be a JSON number"):
        JobFailedDetail.model_validate({**old, "durationSec": "900"})
