"""Stored onboarding previews: reading them for the review pages, a person's decision on a candidate, the approval.

Only the newest preview not yet superseded can be decided on or approved, and only while it is fresh (pulled less
than WARP_ONBOARDING_PREVIEW_MAX_AGE_HOURS ago): what executes is what the approver saw, about the world as it
was. Every decision and the approval record who made them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.errors import Failure, ServiceError
from warp_sync_pipeline.core.onboarding.matching import Category
from warp_sync_pipeline.core.reconciliation_runs import dumps_json

PAGE_SIZE = 50
DECIDABLE = (Category.REVIEW.value, Category.MANY_TO_ONE.value)


class PreviewError(ServiceError):
    """A preview that cannot be decided on or approved as asked; `code` is stable."""


@dataclass(frozen=True)
class PreviewRecord:
    id: int
    status: str
    pulled_at: datetime
    created_at: datetime
    summary: dict[str, Any]
    approved_by: str | None
    approved_at: datetime | None
    approval: dict[str, Any] | None

    def fresh(self, max_age: timedelta, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) - self.pulled_at <= max_age


@dataclass(frozen=True)
class Candidate:
    id: int
    customer_id: UUID | None
    ban: str | None
    customer_name: str | None
    contact_email: str | None
    company_id: str | None
    company_name: str | None
    company_domains: str | None
    category: str
    matched_domain: str | None
    name_score: float | None
    second_score: float | None
    reasons: str | None
    decision: str | None
    decided_by: str | None
    label: str | None = None
    labelled_by: str | None = None


@dataclass(frozen=True)
class CandidatePage:
    rows: list[Candidate]
    next_after: int | None


def list_previews(engine: sa.Engine, limit: int = 20) -> list[PreviewRecord]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"{_SELECT_PREVIEW} ORDER BY id DESC LIMIT :limit"), {"limit": limit}).all()
    return [_record(row) for row in rows]


def get_preview(engine: sa.Engine, preview_id: int) -> PreviewRecord | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"{_SELECT_PREVIEW} WHERE id = :id"), {"id": preview_id}).first()
    return _record(row) if row else None


def list_candidates(engine: sa.Engine, preview_id: int, category: str, *, after: int | None = None,
                    ban: str | None = None, limit: int = PAGE_SIZE) -> CandidatePage:
    """One page of a category's rows (keyset by row id), each customer with its BAN, name and email."""
    if category not in {c.value for c in Category}:
        raise PreviewError(Failure.INVALID, "VALIDATION_ERROR", f"{category!r} is not a preview category.")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"{_SELECT_CANDIDATE} WHERE o.preview_id = :preview AND o.category = :category AND o.id > :after "
            "AND (CAST(:ban AS text) IS NULL OR c.ban = :ban) ORDER BY o.id LIMIT :limit"
        ), {"preview": preview_id, "category": category, "after": after or 0, "ban": ban,
            "limit": limit + 1}).all()
    page = [_candidate(row) for row in rows[:limit]]
    return CandidatePage(page, page[-1].id if len(rows) > limit else None)


_SELECT_CANDIDATE = (
    "SELECT o.id, o.customer_id, c.ban, c.company_name AS customer_name, c.contact_email, o.company_id, "
    "o.company_name, o.company_domains, o.category, o.matched_domain, o.name_score, o.second_score, o.reasons, "
    "o.decision, o.decided_by, o.label, o.labelled_by "
    "FROM onboarding_candidates o LEFT JOIN customers c ON c.id = o.customer_id"
)


def _candidate(row: Any) -> Candidate:
    return Candidate(**{k: (float(v) if k in ("name_score", "second_score") and v is not None else v)
                        for k, v in row._mapping.items()})


def sample_rows(engine: sa.Engine, preview_id: int, *, after: int | None = None,
                limit: int = PAGE_SIZE) -> CandidatePage:
    """A page of the labelling sample (every category), unlabelled rows first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"{_SELECT_CANDIDATE} WHERE o.preview_id = :preview AND o.in_sample AND o.id > :after "
            "ORDER BY o.id LIMIT :limit"), {"preview": preview_id, "after": after or 0, "limit": limit + 1}).all()
    page = [_candidate(row) for row in rows[:limit]]
    return CandidatePage(page, page[-1].id if len(rows) > limit else None)


def label_candidate(engine: sa.Engine, preview_id: int, candidate_id: int, label: str, *, actor: str) -> None:
    """A person's judgement of a sampled pair: the same organisation, or different (measurement only: it links
    nothing)."""
    if label not in ("same", "different"):
        raise PreviewError(Failure.INVALID, "VALIDATION_ERROR", "label must be same or different.")
    with engine.begin() as conn:
        changed = conn.execute(sa.text(
            "UPDATE onboarding_candidates SET label = :label, labelled_by = :actor, labelled_at = now() "
            "WHERE id = :id AND preview_id = :preview AND in_sample"),
            {"label": label, "actor": actor, "id": candidate_id, "preview": preview_id}).rowcount
    if not changed:
        raise PreviewError(Failure.NOT_FOUND, "NOT_FOUND", f"No sampled row {candidate_id} in preview {preview_id}.")


@dataclass(frozen=True)
class MeasuredPrecision:
    category: str
    sampled: int
    labelled: int
    same: int

    @property
    def precision(self) -> float | None:
        return self.same / self.labelled if self.labelled else None


def measured_precision(engine: sa.Engine, preview_id: int) -> list[MeasuredPrecision]:
    """Per category, of the sampled pairs a person labelled, the share that are the same organisation."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT category, count(*), count(label), count(*) FILTER (WHERE label = 'same') "
            "FROM onboarding_candidates WHERE preview_id = :preview AND in_sample GROUP BY category ORDER BY category"
        ), {"preview": preview_id}).all()
    return [MeasuredPrecision(category, int(sampled), int(labelled), int(same))
            for category, sampled, labelled, same in rows]


def decide_candidate(engine: sa.Engine, preview_id: int, candidate_id: int, decision: str, *, actor: str,
                     max_age: timedelta) -> Candidate:
    """Confirm (this customer links to this company) or reject a review or cluster candidate. A customer links to
    one company at most and a company to one customer: confirming a second one is refused, naming the first."""
    if decision not in ("confirmed", "rejected"):
        raise PreviewError(Failure.INVALID, "VALIDATION_ERROR", "decision must be confirmed or rejected.")
    with engine.begin() as conn:
        _open_preview(conn, preview_id, max_age)
        row = conn.execute(sa.text(
            "SELECT customer_id, company_id, category FROM onboarding_candidates "
            "WHERE id = :id AND preview_id = :preview FOR UPDATE"), {"id": candidate_id, "preview": preview_id}).first()
        if row is None:
            raise PreviewError(Failure.NOT_FOUND, "NOT_FOUND", f"No candidate {candidate_id} in preview {preview_id}.")
        if row.category not in DECIDABLE:
            raise PreviewError(Failure.CONFLICT, "NOT_DECIDABLE",
                               f"A {row.category} row is not decided by a person.")
        if decision == "confirmed":
            _check_free(conn, preview_id, candidate_id, row.customer_id, row.company_id)
        conn.execute(sa.text(
            "UPDATE onboarding_candidates SET decision = :decision, decided_by = :actor, decided_at = now() "
            "WHERE id = :id"), {"decision": decision, "actor": actor, "id": candidate_id})
    page = [c for c in list_candidates(engine, preview_id, row.category, after=candidate_id - 1, limit=1).rows]
    return page[0]


def approve_preview(engine: sa.Engine, preview_id: int, *, actor: str, max_age: timedelta,
                    create_missing: bool, set_domain: bool) -> PreviewRecord:
    """Approve the newest fresh preview for execution, with the approver's choices: create companies for the
    customers without one, and whether those get their email's domain."""
    with engine.begin() as conn:
        summary = _open_preview(conn, preview_id, max_age)
        if create_missing and summary.get("portal", {}).get("ban_property") != "unique":
            raise PreviewError(Failure.CONFLICT, "BAN_PROPERTY_NOT_UNIQUE",
                               "Companies can be created only where HubSpot keeps warp_ban unique: make a unique "
                               "property for the BANs first, then run a new preview.")
        conn.execute(sa.text(
            "UPDATE onboarding_previews SET status = 'approved', approved_by = :actor, approved_at = now(), "
            "approval = CAST(:approval AS jsonb) WHERE id = :id"),
            {"actor": actor, "id": preview_id,
             "approval": dumps_json({"create_missing": create_missing, "set_domain": set_domain})})
    record = get_preview(engine, preview_id)
    assert record is not None
    return record


def _open_preview(conn: sa.Connection, preview_id: int, max_age: timedelta) -> dict[str, Any]:
    """The preview's summary, once it is known to be open (ready and fresh), locked for the transaction."""
    row = conn.execute(sa.text("SELECT status, pulled_at, summary FROM onboarding_previews WHERE id = :id FOR UPDATE"),
                       {"id": preview_id}).first()
    if row is None:
        raise PreviewError(Failure.NOT_FOUND, "NOT_FOUND", f"No preview {preview_id}.")
    if row.status != "ready":
        raise PreviewError(Failure.CONFLICT, "PREVIEW_NOT_OPEN",
                           f"Preview {preview_id} is {row.status}: only the newest preview not yet approved can be "
                           "decided on or approved.")
    if datetime.now(UTC) - row.pulled_at > max_age:
        raise PreviewError(Failure.CONFLICT, "PREVIEW_TOO_OLD",
                           f"Preview {preview_id} was pulled at {row.pulled_at:%Y-%m-%d %H:%M} UTC, more than "
                           f"{max_age.total_seconds() / 3600:g} h ago: run a new preview.")
    return dict(row.summary)


def _check_free(conn: sa.Connection, preview_id: int, candidate_id: int, customer_id: UUID | None,
                company_id: str | None) -> None:
    taken = conn.execute(sa.text(
        """
        SELECT id, customer_id::text, company_id FROM onboarding_candidates
        WHERE preview_id = :preview AND id <> :id
          AND (decision = 'confirmed' OR category IN ('linked_by_ban', 'auto_link'))
          AND (customer_id = :customer OR company_id = :company)
        LIMIT 1
        """
    ), {"preview": preview_id, "id": candidate_id, "customer": customer_id, "company": company_id}).first()
    if taken is not None:
        side = "customer" if str(customer_id) == taken.customer_id else "company"
        raise PreviewError(Failure.CONFLICT, "ALREADY_LINKED",
                           f"The {side} is already linked in this preview (row {taken.id}); reject that one first.")


_SELECT_PREVIEW = ("SELECT id, status, pulled_at, created_at, summary, approved_by, approved_at, approval "
                   "FROM onboarding_previews")


def _record(row: Any) -> PreviewRecord:
    return PreviewRecord(id=row.id, status=row.status, pulled_at=row.pulled_at, created_at=row.created_at,
                         summary=row.summary, approved_by=row.approved_by, approved_at=row.approved_at,
                         approval=row.approval)
