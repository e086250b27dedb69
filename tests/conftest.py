import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from routing_manager.local import stack as local_stack
from routing_manager.local.stack import LocalStack

# The rules Lambda's package root, as Lambda puts it on sys.path (app.py imports routing_core).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "functions" / "rules"))

TESTS = Path(__file__).resolve().parent
# Folders whose every test runs the local stack; elsewhere a test says so with @pytest.mark.local_stack.
LOCAL_STACK_FOLDERS = ("workflow", "reliability", "differential", "local_up")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make unit` (-m "not local_stack and not slow") runs in seconds: mark what deploys the stack."""
    for item in items:
        folder = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
        if folder in LOCAL_STACK_FOLDERS:
            item.add_marker(pytest.mark.local_stack)


@pytest.fixture(autouse=True)
def no_fault_left_behind() -> Iterator[None]:
    """A fault a test injected into a rules Lambda and did not use would hit the next test: fail the
    test that left it, and clear it."""
    yield
    from routing_manager.local import moto_adapters

    left = {fn.name: list(fn.faults) for fn in moto_adapters.LOCAL_FUNCTIONS.values() if fn.faults}
    for fn in moto_adapters.LOCAL_FUNCTIONS.values():
        fn.faults.clear()
    if left:
        pytest.fail(f"injected faults left behind: {left}")


# The local stack, for every test folder: in process, one per module; fresh_stack for a test that breaks it.
@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    with local_stack.mocked_aws():
        yield


@pytest.fixture(scope="module")
def stack(aws: None) -> Iterator[LocalStack]:
    deployed = local_stack.deploy()
    yield deployed
    local_stack.release(deployed)


@pytest.fixture
def fresh_stack(aws: None) -> Iterator[LocalStack]:
    """A stack of its own, for tests that break something (a queue, a service)."""
    deployed = local_stack.deploy_unique()
    yield deployed
    local_stack.release(deployed)
