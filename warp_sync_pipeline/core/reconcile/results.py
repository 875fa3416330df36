"""The nightly's results, typed: one record's outcome, a write-back's summary, the report.

They flow from the write-backs to the report, the asset checks and metadata, the email and the run row. Each is
serialised in one place, `to_json()`, and read back by `from_json()`: the Parquet IO manager stores them between
assets (and hands back the typed value), the run row keeps the report as jsonb, the email renders a Report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar

# What became of one record of the plan.
APPLIED = "applied"
SKIPPED = "skipped"
FAILED = "failed"
NOT_WRITTEN = "not_written"  # a gate stopped the write-back
DRY_RUN = "dry_run"


@dataclass(frozen=True)
class Record:
    """One planned row (a field change, a link, a conflict, a merge) and its outcome."""

    outcome: str
    customer_id: str | None = None
    ban: str | None = None
    company_id: str | None = None
    company_name: str | None = None
    field: str | None = None
    hubspot_property: str | None = None
    action: str | None = None
    reason: str | None = None
    old: str | None = None
    new: str | None = None
    code: str | None = None
    message: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


class _Tallied:
    """How many of `records` were applied, skipped and failed."""

    records: list[Record]

    @property
    def applied(self) -> int:
        return sum(1 for r in self.records if r.outcome == APPLIED)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.records if r.outcome == SKIPPED)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r.outcome == FAILED)


@dataclass
class Part(_Tallied):
    """The records of one kind of WARP-side work (conflicts, links, merges) and how many were planned."""

    planned: int = 0
    records: list[Record] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"planned": self.planned, "records": [asdict(r) for r in self.records],
                "applied": self.applied, "skipped": self.skipped, "failed": self.failed}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Part:
        data = data or {}
        return cls(planned=int(data.get("planned", 0)), records=[Record.from_json(r) for r in data.get("records", [])])


@dataclass
class WriteBackSummary(_Tallied):
    """What one side's write-back did: its gate's status, the field records, and (WARP) the other parts."""

    SIDES: ClassVar[tuple[str, str]] = ("hubspot", "warp")

    side: str
    status: str
    reason: str = ""
    planned: int = 0
    records: list[Record] = field(default_factory=list)
    conflicts: Part = field(default_factory=Part)
    conflicts_opened: int = 0
    conflicts_updated: int = 0
    links: Part = field(default_factory=Part)
    merges: Part = field(default_factory=Part)
    creates: Part = field(default_factory=Part)  # (HubSpot) companies made for customers without one
    agreements_planned: int = 0
    agreements_recorded: int = 0
    invalid_planned: int = 0
    invalid_logged: int = 0

    def failures(self) -> Iterator[Record]:
        """Every failed record: field writes, then conflicts, links, merges and creates."""
        for records in (self.records, self.conflicts.records, self.links.records, self.merges.records,
                        self.creates.records):
            yield from (r for r in records if r.outcome == FAILED)

    @property
    def errors(self) -> int:
        return sum(1 for _ in self.failures())

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "WriteBackSummary", "side": self.side, "status": self.status, "reason": self.reason,
            "planned": self.planned, "records": [asdict(r) for r in self.records],
            "applied": self.applied, "skipped": self.skipped, "failed": self.failed, "errors": self.errors,
            "conflicts": {**self.conflicts.to_json(), "opened": self.conflicts_opened,
                          "updated": self.conflicts_updated},
            "links": self.links.to_json(), "merges": self.merges.to_json(), "creates": self.creates.to_json(),
            "agreements": {"planned": self.agreements_planned, "recorded": self.agreements_recorded},
            "invalid": {"planned": self.invalid_planned, "logged": self.invalid_logged},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WriteBackSummary:
        conflicts = data.get("conflicts") or {}
        agreements, invalid = data.get("agreements") or {}, data.get("invalid") or {}
        return cls(
            side=str(data["side"]), status=str(data["status"]), reason=str(data.get("reason") or ""),
            planned=int(data.get("planned", 0)), records=[Record.from_json(r) for r in data.get("records", [])],
            conflicts=Part.from_json(conflicts), conflicts_opened=int(conflicts.get("opened", 0)),
            conflicts_updated=int(conflicts.get("updated", 0)), links=Part.from_json(data.get("links")),
            merges=Part.from_json(data.get("merges")), creates=Part.from_json(data.get("creates")),
            agreements_planned=int(agreements.get("planned", 0)),
            agreements_recorded=int(agreements.get("recorded", 0)), invalid_planned=int(invalid.get("planned", 0)),
            invalid_logged=int(invalid.get("logged", 0)),
        )


@dataclass(frozen=True)
class ReportSection:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    total_rows: int
    note: str = ""
    # The columns holding customer data (names, field values, free text): left out where the report is shown
    # outside the review pages and the email (Dagster's event log).
    personal: list[str] = field(default_factory=list)
    # Which columns open something (column -> a core.web_links kind: customer, company, conflicts, run), and each
    # row's keys for them (kind -> id; "ban" and "field" for conflicts): ids people need not read, kept beside the
    # rows so the renderers can link the BAN or the name shown.
    link_columns: dict[str, str] = field(default_factory=dict)
    keys: list[dict[str, str]] = field(default_factory=list)

    def row_keys(self, index: int) -> dict[str, str]:
        return self.keys[index] if index < len(self.keys) else {}

    def capped(self, max_rows: int) -> ReportSection:
        """The first `max_rows` rows (and their keys), the total kept."""
        return replace(self, rows=self.rows[:max_rows], keys=self.keys[:max_rows])

    def to_json(self) -> dict[str, Any]:
        section: dict[str, Any] = {"title": self.title, "columns": self.columns, "rows": self.rows,
                                   "total_rows": self.total_rows}
        if self.note:
            section["note"] = self.note
        if self.personal:
            section["personal"] = list(self.personal)
        if self.link_columns:
            section["link_columns"] = dict(self.link_columns)
            section["keys"] = [dict(k) for k in self.keys]
        return section

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReportSection:
        if not isinstance(data, Mapping):
            raise TypeError("a report section must be a mapping")
        rows = [list(r.values()) if isinstance(r, Mapping) else list(r) for r in data.get("rows") or []]
        total = data.get("total_rows")  # kept rows are capped; a missing or smaller total means these are all
        total_rows = total if isinstance(total, int) and total >= len(rows) else len(rows)
        link_columns = data.get("link_columns") or {}
        keys = [{str(k): str(v) for k, v in row.items() if v is not None}
                for row in data.get("keys") or [] if isinstance(row, Mapping)]
        return cls(title=str(data.get("title") or ""), columns=[str(c) for c in data.get("columns") or []],
                   rows=rows, total_rows=total_rows, note=str(data.get("note") or ""),
                   personal=[str(c) for c in data.get("personal") or []],
                   link_columns={str(k): str(v) for k, v in link_columns.items()} if isinstance(link_columns, Mapping)
                   else {}, keys=keys)


@dataclass(frozen=True)
class Report:
    """The nightly's report: counts, alerts (someone must act) and notes, and the sections of rows."""

    run_id: str
    dry_run: bool
    status: str
    counts: dict[str, int | float]
    alerts: list[str]
    notes: list[str]
    sections: list[ReportSection]
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def capped(self, max_rows: int) -> Report:
        """The report with each section's first `max_rows` rows (the totals kept): what the run row stores."""
        return replace(self, sections=[s.capped(max_rows) for s in self.sections])

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "Report", "run_id": self.run_id, "dry_run": self.dry_run, "status": self.status,
            "counts": dict(self.counts), "alerts": list(self.alerts), "notes": list(self.notes),
            "sections": [s.to_json() for s in self.sections],
        }
        for name in ("started_at", "finished_at"):
            moment = getattr(self, name)
            if moment is not None:
                data[name] = moment.isoformat()
        return data

    @classmethod
    def read(cls, report: Report | Mapping[str, Any]) -> Report:
        """A Report, or one stored as JSON (the run row's, a test's) read back."""
        if isinstance(report, Report):
            return report
        if not isinstance(report, Mapping):
            raise TypeError("the report must be a Report or its JSON")
        return cls.from_json(report)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        counts = data.get("counts") or {}
        if not isinstance(counts, Mapping):
            raise TypeError("a report's counts must be a mapping of name to number")
        return cls(
            run_id=str(data.get("run_id") or "unknown"), dry_run=bool(data.get("dry_run")),
            status=str(data.get("status") or ""), counts={str(k): v for k, v in counts.items()},
            alerts=[str(a) for a in data.get("alerts") or []], notes=[str(n) for n in data.get("notes") or []],
            sections=[ReportSection.from_json(s) for s in data.get("sections") or []],
            started_at=_moment(data.get("started_at")), finished_at=_moment(data.get("finished_at")),
        )


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# The typed results the Parquet IO manager stores as JSON and reads back, by the "type" their JSON carries.
STORED_TYPES: dict[str, Any] = {"WriteBackSummary": WriteBackSummary, "Report": Report}


def from_stored(data: Any) -> Any:
    """A stored JSON value as the typed result it was (plain JSON values as they are). A write-back summary
    stored before the results were typed (no "type") is read as one too, so re-running a report step of an
    older run still gets typed inputs."""
    if not isinstance(data, Mapping):
        return data
    if data.get("type") in STORED_TYPES:
        return STORED_TYPES[data["type"]].from_json(data)
    if "type" not in data and data.get("side") in WriteBackSummary.SIDES and "records" in data:
        return WriteBackSummary.from_json(data)
    return data


@dataclass(frozen=True)
class TrendPoint:
    """One finished run as the report's trend shows it: how far the sides had drifted apart, how many conflicts it
    opened for people, how many writes failed (None: a run that failed before it counted)."""

    run_id: str
    started_at: datetime
    status: str
    dry_run: bool
    drift: int | None
    conflicts_opened: int | None
    errors: int | None
    mode: str = "full"  # an incremental run's drift counts only what moved: the mark tells the two apart
