"""Suite-wide fixtures live in tests/plugins/, one module per area."""

pytest_plugins = [
    "tests.plugins.sandbox",
    "tests.plugins.database",
    "tests.plugins.smtp",
    "tests.plugins.dagster_stack",
    "tests.plugins.customers",
]
