from tests.workflow.conftest import aws, fresh_stack, stack  # noqa: F401  (the same local-stack fixtures)
