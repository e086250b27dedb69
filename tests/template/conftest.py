"""The template as written and as SAM translates it, for every template test."""

from __future__ import annotations

from typing import Any

import pytest

from routing_manager.local.stack import load_template, translate


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate()
