"""HubSpot for warp-sync: the client, its shared request budget, and our property schema.

Plain Python (httpx, SQLAlchemy Core, tenacity); Dagster and Flask wrap it, never the reverse.
"""

from warp_sync_pipeline.core.hubspot.batch_reads import MERGED_IDS_PROPERTY
from warp_sync_pipeline.core.hubspot.budget import Bucket, BudgetSettings, Priority, RequestBudget
from warp_sync_pipeline.core.hubspot.client import (
    DEFAULT_BASE_URL,
    HubSpotClient,
    HubSpotSettings,
    client_from_env,
    client_from_settings,
)
from warp_sync_pipeline.core.hubspot.errors import (
    AuthFailed,
    BadRequest,
    BudgetExhausted,
    Conflict,
    DailyShareReserved,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    PropertyError,
    RateLimited,
    RequestFailed,
    SearchLimitExceeded,
    ServiceUnavailable,
    UniqueValueConflict,
    ValidationFailed,
)
from warp_sync_pipeline.core.hubspot.exports import ExportFailed, ExportStatus, export_rows
from warp_sync_pipeline.core.hubspot.models import (
    Company,
    CompanyPage,
    CompanyUpdate,
    DailyQuota,
    Filter,
    PageProgress,
    PropertyVersion,
    RecordOutcome,
    SearchPage,
    Sort,
)
from warp_sync_pipeline.core.hubspot.properties import (
    COMPANY_PROPERTIES,
    PROPERTIES_BY_NAME,
    SYNCED_PROPERTIES,
    UNIQUE_PROPERTIES,
    EnsureResult,
    PropertyDefinition,
    PropertyOption,
)
from warp_sync_pipeline.core.hubspot.property_schema import PropertySchemaMismatch
from warp_sync_pipeline.core.hubspot.transport import RetryPolicy
from warp_sync_pipeline.core.hubspot.versions import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    ApiVersion,
    api_version,
    api_version_from_env,
)

__all__ = [
    "ExportFailed",
    "ExportStatus",
    "export_rows",
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "ApiVersion",
    "api_version",
    "api_version_from_env",
    "MERGED_IDS_PROPERTY",
    "COMPANY_PROPERTIES",
    "DEFAULT_BASE_URL",
    "PROPERTIES_BY_NAME",
    "SYNCED_PROPERTIES",
    "UNIQUE_PROPERTIES",
    "AuthFailed",
    "BadRequest",
    "Bucket",
    "BudgetExhausted",
    "BudgetSettings",
    "Company",
    "DailyQuota",
    "CompanyPage",
    "CompanyUpdate",
    "Conflict",
    "DailyShareReserved",
    "EnsureResult",
    "Filter",
    "HubSpotClient",
    "HubSpotError",
    "HubSpotSettings",
    "NotFound",
    "OutcomeUnknown",
    "PageProgress",
    "Priority",
    "PropertyDefinition",
    "PropertyError",
    "PropertyOption",
    "PropertySchemaMismatch",
    "PropertyVersion",
    "RateLimited",
    "RecordOutcome",
    "RequestBudget",
    "RequestFailed",
    "RetryPolicy",
    "SearchLimitExceeded",
    "SearchPage",
    "ServiceUnavailable",
    "Sort",
    "UniqueValueConflict",
    "ValidationFailed",
    "client_from_env",
    "client_from_settings",
]
