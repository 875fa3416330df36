"""Suite-wide fixtures live in tests/plugins/, one module per area; a folder's conftest.py holds only what its
own tests share. The folders follow the packages under test: core/ (warp_sync_pipeline/core), defs/ (the
Dagster definitions and resources), receiver/ (webhook_receiver), cli/, hubspot_sandbox/, and deployment/
(tests against the running Dagster stack)."""

pytest_plugins = [
    "tests.plugins.sandbox",
    "tests.plugins.database",
    "tests.plugins.smtp",
    "tests.plugins.dagster_stack",
    "tests.plugins.customers",
    "tests.plugins.inbound",
    "tests.plugins.outbound",
    "tests.plugins.reconcile",
]
