"""Records of nightly reconciliation runs (`hubspot_reconciliation_runs`), one row per Dagster run.

Life of a row:
- `start_run` when the run starts: an upsert keyed by the run id that never touches a finished row
  (a retried first step may call it again);
- `finish_run` from the report: counts, the report dict and its Markdown, `succeeded` (or `failed`);
- `mark_failed` from the run-status sensors when the run fails, is cancelled or dies: inserts the
  row if the run never got as far as starting it.
A finished status (`succeeded`, `failed`) is final; the table's trigger enforces it as well.

Also the run-tag vocabulary shared by the reconciliation job, its sensors and the request API.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from warp_sync_pipeline.core.email import render_markdown
from warp_sync_pipeline.core.reconcile.results import Report, TrendPoint

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
FINISHED_STATUSES = (SUCCEEDED, FAILED)
STATUSES = (RUNNING, *FINISHED_STATUSES)

# Long enough for a stack of step errors, short enough for an email and a table cell.
MAX_REASON_CHARS = 4000

_CONTROL_EXCEPT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class ReconciliationRunError(ValueError):
    """Bad input to a run record call; `code` is stable for callers and API answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    request_id: str | None
    status: str
    dry_run: bool
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, Any]
    report: dict[str, Any] | None
    report_markdown: str | None
    failure_reason: str | None
    updated_at: dt.datetime
    # The latest progress line of each stage while the run goes (warp_pull, hubspot_pull, ...).
    progress: dict[str, str] = field(default_factory=dict)
    mode: str = "full"  # full or incremental (core/reconcile/incremental.py)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


# --- JSON -------------------------------------------------------------------------------------
def _iso_or_none(value: dt.date | dt.time) -> str | None:
    try:
        return value.isoformat()
    except ValueError:  # pandas NaT
        return None


# Scalars by type, first match wins (bool and str enums are str/int already, kept as they are).
_SCALARS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((str, bool, int), lambda value: value),
    (float, lambda value: value if math.isfinite(value) else None),
    (decimal.Decimal, lambda value: str(value) if value.is_finite() else None),
    ((dt.datetime, dt.date, dt.time), _iso_or_none),
    (uuid.UUID, str),
    (enum.Enum, lambda value: to_jsonable(value.value)),
)


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from what reports and summaries hold (numpy/pandas scalars, Decimal, times).

    NaN and infinities become null (PostgreSQL's jsonb and strict JSON refuse them); Decimal
    becomes its exact string; times become ISO-8601.
    """
    if value is None:
        return None
    for kinds, convert in _SCALARS:
        if isinstance(value, kinds):
            return convert(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v) for v in items]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    return _foreign_to_jsonable(value)


def _foreign_to_jsonable(value: Any) -> Any:
    # numpy and pandas scalars and arrays, without importing either here.
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return to_jsonable(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):
        return to_jsonable(value.tolist())
    if value.__class__.__name__ in {"NAType", "NaTType"}:
        return None
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def dumps_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), allow_nan=False, ensure_ascii=False, sort_keys=False)


# --- validation -------------------------------------------------------------------------------
def _require_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not run_id.strip():
        raise ReconciliationRunError("INVALID_RUN_ID", "a reconciliation run needs a non-empty run id")
    return run_id.strip()


def _clean_request_id(request_id: str | int | None) -> str | None:
    if request_id is None:
        return None
    text = str(request_id).strip()
    return text or None


def _clean_reason(reason: str) -> str:
    text = _CONTROL_EXCEPT_NEWLINE.sub("", str(reason or "")).strip() or "no reason given"
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def _clean_counts(counts: Mapping[str, Any]) -> dict[str, int | float]:
    if not isinstance(counts, Mapping):
        raise ReconciliationRunError("INVALID_COUNTS", "counts must be a mapping of name to number")
    cleaned: dict[str, int | float] = {}
    for key, value in counts.items():
        plain = to_jsonable(value)
        if isinstance(plain, bool) or not isinstance(plain, (int, float)):
            raise ReconciliationRunError("INVALID_COUNTS", f"count {key!r} is not a number")
        cleaned[str(key)] = plain
    return cleaned


# --- statements -------------------------------------------------------------------------------
_COLUMNS = (
    "run_id, request_id, status, dry_run, started_at, finished_at, counts, report, report_markdown, "
    "failure_reason, updated_at, progress, mode"
)

_START = sa.text(
    f"""
    INSERT INTO hubspot_reconciliation_runs AS r (run_id, request_id, status, dry_run)
    VALUES (:run_id, :request_id, 'running', :dry_run)
    ON CONFLICT (run_id) DO UPDATE
        SET request_id = COALESCE(EXCLUDED.request_id, r.request_id),
            dry_run = EXCLUDED.dry_run
        WHERE r.status = 'running'
    RETURNING {_COLUMNS}
    """
)

_FINISH = sa.text(
    f"""
    UPDATE hubspot_reconciliation_runs
       SET status = :status,
           finished_at = now(),
           counts = CAST(:counts AS jsonb),
           report = CAST(:report AS jsonb),
           report_markdown = :report_markdown,
           failure_reason = :failure_reason,
           braked = :braked
     WHERE run_id = :run_id AND status = 'running'
    RETURNING {_COLUMNS}
    """
)

_MARK_FAILED = sa.text(
    f"""
    INSERT INTO hubspot_reconciliation_runs AS r
           (run_id, request_id, status, dry_run, finished_at, failure_reason)
    VALUES (:run_id, :request_id, 'failed', :dry_run, now(), :reason)
    ON CONFLICT (run_id) DO UPDATE
        SET status = 'failed',
            finished_at = now(),
            failure_reason = EXCLUDED.failure_reason,
            request_id = COALESCE(r.request_id, EXCLUDED.request_id)
        WHERE r.status = 'running'
    RETURNING {_COLUMNS}
    """
)

_GET = sa.text(f"SELECT {_COLUMNS} FROM hubspot_reconciliation_runs WHERE run_id = :run_id")

_GET_FOR_REQUEST = sa.text(
    f"""
    SELECT {_COLUMNS} FROM hubspot_reconciliation_runs
     WHERE request_id = :request_id
     ORDER BY started_at DESC, run_id DESC
     LIMIT 1
    """
)


def _record(row: sa.Row) -> RunRecord:
    m = row._mapping
    return RunRecord(
        run_id=m["run_id"],
        request_id=m["request_id"],
        status=m["status"],
        dry_run=m["dry_run"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        counts=dict(m["counts"] or {}),
        report=m["report"],
        report_markdown=m["report_markdown"],
        failure_reason=m["failure_reason"],
        updated_at=m["updated_at"],
        progress=dict(m["progress"] or {}),
        mode=m["mode"],
    )


# --- the API ----------------------------------------------------------------------------------
def start_run(engine: sa.Engine, run_id: str, request_id: str | int | None = None, dry_run: bool = False) -> RunRecord:
    """Record that the run started (status `running`); returns the row as it now stands.

    Calling it again for a running row keeps its start time (and a request id already known);
    for a finished row it changes nothing and returns that row, finished status included.
    """
    params = {"run_id": _require_run_id(run_id), "request_id": _clean_request_id(request_id), "dry_run": bool(dry_run)}
    with engine.begin() as conn:
        row = conn.execute(_START, params).first()
        if row is None:  # finished already: left exactly as it was
            row = conn.execute(_GET, {"run_id": params["run_id"]}).one()
    return _record(row)


def finish_run(
    engine: sa.Engine,
    run_id: str,
    counts: Mapping[str, Any],
    report: Report | Mapping[str, Any],
    status: str = SUCCEEDED,
    *,
    report_markdown: str | None = None,
    failure_reason: str | None = None,
    braked: bool = False,
) -> RunRecord:
    """Finish a running row with its counts and report; returns the row as it now stands.

    `report` is a `Report` (or its JSON), which `core.email` renders; its Markdown is rendered here unless given. A row
    that is already finished is left as it was (check `.status` on the result): a run the
    sensors marked failed is never turned into a success. Raises `ReconciliationRunError`
    (`RECONCILIATION_RUN_NOT_STARTED`) when no row exists: `start_run` comes first.
    """
    if status not in FINISHED_STATUSES:
        raise ReconciliationRunError(
            "INVALID_RUN_STATUS", f"a run finishes as one of {', '.join(FINISHED_STATUSES)}, not {status!r}"
        )
    if not isinstance(report, Report | Mapping):
        raise ReconciliationRunError("INVALID_REPORT", "the report must be a Report or its JSON")
    report = report.to_json() if isinstance(report, Report) else report
    if report_markdown is None:
        report_markdown = render_markdown(report)
    params = {
        "run_id": _require_run_id(run_id),
        "status": status,
        "counts": dumps_json(_clean_counts(counts)),
        "report": dumps_json(report),
        "report_markdown": report_markdown,
        "failure_reason": _clean_reason(failure_reason) if failure_reason is not None else None,
        "braked": bool(braked),
    }
    with engine.begin() as conn:
        row = conn.execute(_FINISH, params).first()
        if row is None:
            row = conn.execute(_GET, {"run_id": params["run_id"]}).first()
            if row is None:
                raise ReconciliationRunError(
                    "RECONCILIATION_RUN_NOT_STARTED",
                    f"reconciliation run {params['run_id']} has no record; call start_run first",
                )
    return _record(row)


def mark_failed(
    engine: sa.Engine,
    run_id: str,
    reason: str,
    *,
    request_id: str | int | None = None,
    dry_run: bool = False,
) -> RunRecord:
    """Mark the run failed with its reason (cancelled runs count as failed).

    Inserts the row when the run died before starting it (`request_id` and `dry_run`, from the
    run's tags, are used only then). A finished row is left as it was; the result says which.
    """
    params = {
        "run_id": _require_run_id(run_id),
        "reason": _clean_reason(reason),
        "request_id": _clean_request_id(request_id),
        "dry_run": bool(dry_run),
    }
    with engine.begin() as conn:
        row = conn.execute(_MARK_FAILED, params).first()
        if row is None:
            row = conn.execute(_GET, {"run_id": params["run_id"]}).one()
    return _record(row)


_PROGRESS = sa.text(
    """
    UPDATE hubspot_reconciliation_runs SET progress = progress || jsonb_build_object(:stage, :message)
     WHERE run_id = :run_id AND status = 'running'
    """
)


def record_email_outcome(engine: sa.Engine, run_id: str, outcome: str) -> None:
    """What became of the report email ('sent to 2 recipient(s)', 'not configured', 'failed: CODE'): the alert
    sensor reads it (an unsent report alerts)."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_reconciliation_runs SET email_outcome = :outcome WHERE run_id = :run_id"),
                     {"run_id": _require_run_id(run_id), "outcome": outcome[:500]})


def set_mode(engine: sa.Engine, run_id: str, mode: str) -> None:
    """What kind of run it is (a finished row is left alone)."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_reconciliation_runs SET mode = :mode WHERE run_id = :run_id "
                             "AND status = 'running'"), {"run_id": _require_run_id(run_id), "mode": mode})


def record_progress(engine: sa.Engine, run_id: str, stage: str, message: str) -> None:
    """Keep `message` as the latest progress of `stage` in a running row (a finished row is left alone)."""
    with engine.begin() as conn:
        conn.execute(_PROGRESS, {"run_id": _require_run_id(run_id), "stage": stage, "message": message[:500]})


def get_run(engine: sa.Engine, run_id: str) -> RunRecord | None:
    with engine.connect() as conn:
        row = conn.execute(_GET, {"run_id": run_id}).first()
    return _record(row) if row is not None else None


# How many finished runs the report's trend shows.
TREND_RUNS = 30

_TREND = sa.text(
    """
    SELECT run_id, started_at, status, dry_run, mode,
           (counts->>'pairs_with_differences')::bigint AS drift,
           (counts->>'conflicts_opened')::bigint AS conflicts_opened,
           (counts->>'write_errors')::bigint AS errors
      FROM hubspot_reconciliation_runs
     WHERE status <> 'running'
     ORDER BY started_at DESC, run_id DESC
     LIMIT :limit
    """
)


def recent_trend(engine: sa.Engine, limit: int = TREND_RUNS) -> list[TrendPoint]:
    """The last `limit` finished runs, oldest first: the report's night-over-night trend."""
    with engine.connect() as conn:
        rows = conn.execute(_TREND, {"limit": limit}).mappings().all()
    return [TrendPoint(run_id=r["run_id"], started_at=r["started_at"], status=r["status"], dry_run=r["dry_run"],
                       drift=r["drift"], conflicts_opened=r["conflicts_opened"], errors=r["errors"], mode=r["mode"])
            for r in reversed(rows)]


def get_run_for_request(engine: sa.Engine, request_id: str | int) -> RunRecord | None:
    """The latest run that names the request (a re-executed run shares its request id)."""
    with engine.connect() as conn:
        row = conn.execute(_GET_FOR_REQUEST, {"request_id": _clean_request_id(request_id)}).first()
    return _record(row) if row is not None else None
