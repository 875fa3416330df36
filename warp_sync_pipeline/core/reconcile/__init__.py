"""The nightly reconciliation (DESIGN.md flow 4) as plain services; Dagster's assets each call one of them.

pull       every WARP customer (keyset pages, one snapshot) and every HubSpot company (list paging)
diff       the two joined (link, else BAN), every mapped field normalised and compared, vectorized
history    per-property change times for the companies whose LATEST_WINS values both moved
plan       each difference decided by decide_frame, plus links, orphans and duplicates
writeback  compare-and-set writes to HubSpot (ledger first) and WARP (no-echo marker), per-record outcomes
report     the report dict the email templates and the run row take
options    the run's settings and the gate (dry run, global switch, stale plan, brake)
"""

from warp_sync_pipeline.core.reconcile.diff import compute_differences, history_needed
from warp_sync_pipeline.core.reconcile.history import HistoryFetchError, fetch_property_history
from warp_sync_pipeline.core.reconcile.options import (
    BrakeStats,
    Gate,
    ReconcileError,
    ReconcileOptions,
    writeback_enabled,
    writeback_gate,
)
from warp_sync_pipeline.core.reconcile.plan import brake_stats, build_plan
from warp_sync_pipeline.core.reconcile.pull import (
    hubspot_properties,
    pull_hubspot_companies,
    pull_warp_customers,
)
from warp_sync_pipeline.core.reconcile.report import build_report
from warp_sync_pipeline.core.reconcile.writeback import write_to_hubspot, write_to_warp

__all__ = [
    "BrakeStats",
    "Gate",
    "HistoryFetchError",
    "ReconcileError",
    "ReconcileOptions",
    "brake_stats",
    "build_plan",
    "build_report",
    "compute_differences",
    "fetch_property_history",
    "history_needed",
    "hubspot_properties",
    "pull_hubspot_companies",
    "pull_warp_customers",
    "write_to_hubspot",
    "write_to_warp",
    "writeback_enabled",
    "writeback_gate",
]
