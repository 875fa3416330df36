"""Run-wide settings of a reconciliation and the gate every write-back passes first.

`ReconcileOptions` is what one run was asked to do (Dagster fills it from the `reconciliation` resource,
set per run). `writeback_gate()` decides, for the whole run at once, whether the write-backs may write: a dry
run, the global switch WARP_WRITEBACK_ENABLED, a plan too old to trust, or the brake (the plan would change
more than a share of records and the run does not allow it) each stop every write, and say why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from warp_sync_pipeline.core.settings import DEFAULTS, load_settings

DEFAULT_MAX_CHANGE_SHARE = DEFAULTS.reconcile_max_change_share
DEFAULT_MAX_DRIFT_SHARE = DEFAULTS.reconcile_max_drift_share
DEFAULT_MAX_PLAN_AGE_HOURS = DEFAULTS.reconcile_max_plan_age_hours
DEFAULT_WARP_CHUNK_SIZE = DEFAULTS.reconcile_chunk_size
DEFAULT_WARP_PAGE_SIZE = 10_000


class ReconcileError(ValueError):
    """A reconciliation input or setting that cannot work; `code` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReconcileOptions:
    dry_run: bool = False
    # Lets this one run write a plan that trips the brake.
    allow_mass_write: bool = False
    # The brake: share of compared records the plan may change before nothing is written.
    max_change_share: float = DEFAULT_MAX_CHANGE_SHARE
    # The drift check: share of compared records that may differ before the check fails.
    max_drift_share: float = DEFAULT_MAX_DRIFT_SHARE
    # A plan pulled longer ago than this is refused by the write-backs.
    max_plan_age_hours: float = DEFAULT_MAX_PLAN_AGE_HOURS
    # Customers per WARP write-back transaction.
    warp_chunk_size: int = DEFAULT_WARP_CHUNK_SIZE
    # Customers per keyset page of the WARP pull.
    warp_page_size: int = DEFAULT_WARP_PAGE_SIZE
    # Create a HubSpot company for each customer without one (customers other writers inserted).
    create_missing: bool = DEFAULTS.reconcile_create_missing

    def __post_init__(self) -> None:
        for name in ("max_change_share", "max_drift_share"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ReconcileError("INVALID_RECONCILE_SETTING", f"{name} must be between 0 and 1, got {value}")
        if self.max_plan_age_hours <= 0:
            raise ReconcileError("INVALID_RECONCILE_SETTING", "max_plan_age_hours must be positive")
        if self.warp_chunk_size < 1 or self.warp_page_size < 1:
            raise ReconcileError("INVALID_RECONCILE_SETTING", "chunk and page sizes must be at least 1")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ReconcileOptions:
        """Defaults from WARP_RECONCILE_* (see .env.example); a bad value names its variable."""
        settings = load_settings(environ)
        values = {
            "max_change_share": settings.reconcile_max_change_share,
            "max_drift_share": settings.reconcile_max_drift_share,
            "max_plan_age_hours": settings.reconcile_max_plan_age_hours,
            "warp_chunk_size": settings.reconcile_chunk_size,
            "create_missing": settings.reconcile_create_missing,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def writeback_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """The global switch WARP_WRITEBACK_ENABLED (default on), read when a write-back runs."""
    return load_settings(environ).writeback_enabled


# --- the brake and the gate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrakeStats:
    """How much of the population the plan would change (computed by the plan, judged per run)."""

    records_to_change: int
    records_compared: int

    @property
    def share(self) -> float:
        return self.records_to_change / self.records_compared if self.records_compared else 0.0

    def trips(self, options: ReconcileOptions) -> bool:
        return self.share > options.max_change_share and not options.allow_mass_write

    def exceeds(self, options: ReconcileOptions) -> bool:
        return self.share > options.max_change_share


# Gate statuses: what became of a write-back as a whole.
WRITE = "write"
DRY_RUN = "dry_run"
DISABLED = "disabled"
STALE_PLAN = "stale_plan"
BRAKED = "braked"


@dataclass(frozen=True)
class Gate:
    status: str
    reason: str

    @property
    def open(self) -> bool:
        return self.status == WRITE


def writeback_gate(
    options: ReconcileOptions,
    brake: BrakeStats,
    *,
    pulled_at: datetime | None,
    now: datetime,
    enabled: bool,
) -> Gate:
    """Whether this run's write-backs may write, and if not, why (the first reason that applies).

    `pulled_at` None (a plan that does not say how old it is) counts as too old."""
    if options.dry_run:
        return Gate(DRY_RUN, "Dry run: the plan was computed and nothing was written to either side.")
    if not enabled:
        return Gate(DISABLED, "Write-backs are switched off (WARP_WRITEBACK_ENABLED=false): nothing was written.")
    if pulled_at is None:
        return Gate(STALE_PLAN, "The plan does not say when its data was pulled: nothing was written. "
                                "Run the reconciliation again.")
    age = now - pulled_at
    limit = timedelta(hours=options.max_plan_age_hours)
    if age > limit:
        return Gate(
            STALE_PLAN,
            f"The plan was pulled {_hours(age)} ago, more than the {options.max_plan_age_hours:g} hours allowed: "
            "nothing was written. Run the reconciliation again.",
        )
    if brake.trips(options):
        return Gate(
            BRAKED,
            f"The brake stopped the write-back: the plan would change {brake.records_to_change:,} of "
            f"{brake.records_compared:,} records ({brake.share:.1%}), more than the {options.max_change_share:.1%} "
            "allowed. Nothing was written; run again with allow_mass_write if the plan is right.",
        )
    return Gate(WRITE, "")


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} hours"
