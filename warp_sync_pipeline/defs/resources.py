"""Resource bindings shared by every job, read from the environment when a run starts."""

import dagster as dg

from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "db": DatabaseResource(url=dg.EnvVar("WARP_DATABASE_URL")),
            "hubspot": HubSpotResource.from_env(),
        }
    )
