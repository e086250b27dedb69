"""Where the project's files are: the repository checkout this package was installed from."""

from __future__ import annotations

import os
from pathlib import Path


def _root() -> Path:
    override = os.environ.get("ROUTING_MANAGER_ROOT")
    if override:
        return Path(override).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "template.yaml").is_file() and (parent / "statemachine").is_dir():
            return parent
    return Path.cwd()


ROOT = _root()
TEMPLATE = ROOT / "template.yaml"
ASL = ROOT / "statemachine" / "routing.asl.json"
BATCH_ASL = ROOT / "statemachine" / "batch.asl.json"  # video.job.batch.submitted
EVENTS = ROOT / "events"
SCHEMAS = ROOT / "events" / "schemas"
RULES_FUNCTION = ROOT / "functions" / "rules"
