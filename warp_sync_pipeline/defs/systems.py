"""The two systems warp-sync keeps in step, as external assets: WARP's customers table and HubSpot's companies.

No job materializes them; the outbound, inbound and nightly assets read them (deps), so the global lineage shows
one system instead of three islands. Writes back are not drawn as edges (that would be a cycle): each writing
asset names the system it writes in its `writes_to` metadata (WRITES_WARP, WRITES_HUBSPOT).
"""

import dagster as dg

from warp_sync_pipeline.core.normalize import FIELD_SPECS
from warp_sync_pipeline.runs import CATALOG

GROUP = "systems"

_WARP_COLUMNS = [
    dg.TableColumn("id", "uuid", description="The customer's id in WARP."),
    *[dg.TableColumn(spec.name, spec.type.value.lower(), description="Mapped to HubSpot by hubspot_field_mappings.",
                     constraints=dg.TableColumnConstraints(nullable=spec.nullable))
      for spec in FIELD_SPECS.values()],
    dg.TableColumn("external_ids", "jsonb", description="hubspot_company_id: the linked company."),
    dg.TableColumn("hubspot_link_status", "text", description="unlinked, linked, deleted or review."),
    dg.TableColumn("updated_at", "timestamptz"),
]

warp_customers_table = dg.AssetSpec(
    key=dg.AssetKey(["warp", "customers"]),
    description="WARP's customers table (PostgreSQL): the system of record for customers. Every change is queued "
                "for HubSpot by a trigger (hubspot_sync_queue); webhooks and the nightly write back to it.",
    group_name=GROUP,
    kinds={"postgres"},
    **CATALOG,
    metadata={"system": "WARP", "table": "public.customers", "dagster/column_schema": dg.TableSchema(_WARP_COLUMNS)},
)

_HUBSPOT_COLUMNS = [
    dg.TableColumn("hs_object_id", "string", description="The company's id in HubSpot."),
    dg.TableColumn("hs_lastmodifieddate", "datetime"),
    dg.TableColumn("warp_ban", "string", description="The customer's BAN: unique, the link of last resort."),
    dg.TableColumn("(mapped properties)", "string",
                   description="One property per row of hubspot_field_mappings (name, warp_status, ...)."),
]

hubspot_companies_object = dg.AssetSpec(
    key=dg.AssetKey(["hubspot", "companies"]),
    description="HubSpot's company records (CRM object 0-2): the sales team's view. Changed by people and "
                "integrations (webhooks tell warp-sync), by the queue drain, the nightly and the onboarding.",
    group_name=GROUP,
    kinds={"hubspot"},
    **CATALOG,
    metadata={"system": "HubSpot", "object": "companies (0-2)",
              "dagster/column_schema": dg.TableSchema(_HUBSPOT_COLUMNS)},
)

SYSTEMS = [warp_customers_table.key, hubspot_companies_object.key]
WRITES_WARP = {"writes_to": warp_customers_table.key.to_user_string()}
WRITES_HUBSPOT = {"writes_to": hubspot_companies_object.key.to_user_string()}


@dg.definitions
def systems() -> dg.Definitions:
    return dg.Definitions(assets=[warp_customers_table, hubspot_companies_object])
