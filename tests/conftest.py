import sys
from pathlib import Path

import pytest

# The rules Lambda's package root, as Lambda puts it on sys.path (app.py imports routing_core).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions" / "rules"))

TESTS = Path(__file__).resolve().parent
# Folders whose every test runs the local stack; elsewhere a test says so with @pytest.mark.local_stack.
LOCAL_STACK_FOLDERS = ("workflow", "reliability", "differential")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make unit` (-m "not local_stack and not slow") runs in seconds: mark what deploys the stack."""
    for item in items:
        folder = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
        if folder in LOCAL_STACK_FOLDERS:
            item.add_marker(pytest.mark.local_stack)
