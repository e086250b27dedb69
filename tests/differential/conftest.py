from tests.workflow.conftest import aws, stack  # noqa: F401  (the same local-stack fixtures)
