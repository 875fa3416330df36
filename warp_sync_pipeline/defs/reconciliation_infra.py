"""Resource bindings for the reconciliation: `email` (SMTP) and `parquet_io_manager` (frames).

Read when the definitions load: SMTP settings are bound as `dg.EnvVar`s (the UI shows names, not
values); the frames' retention comes from WARP_FRAME_RETENTION_DAYS, validated here so a bad
value stops the code location with a message naming the variable.
"""

import dagster as dg

from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.resources.email import email_resource_from_env
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager


@dg.definitions
def reconciliation_infra() -> dg.Definitions:
    retention_days = load_settings().frame_retention_days
    return dg.Definitions(
        resources={
            "email": email_resource_from_env(),
            "parquet_io_manager": ParquetIOManager(retention_days=retention_days),
        }
    )
