"""A HubSpot company for each of some customers that have none: the onboarding's creates and the nightly's (for
customers other writers inserted). Never two companies for one BAN, whatever fails: `warp_ban` is unique in
HubSpot, and a company an earlier run or a lost answer may have made is found by its BAN before any is made.

Creates go 100 a call, ledger first (each value recorded under the BAN before the request, bound to the company
once it exists, voided only when HubSpot refused the request), through the caller's client and so its share of
the request budget. A created or adopted company is linked compare-and-set: a customer someone linked meanwhile is
left as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync_many
from warp_sync_pipeline.core.failures import error_code
from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient, HubSpotError, NotFound
from warp_sync_pipeline.core.hubspot.errors import UniqueValueConflict
from warp_sync_pipeline.core.hubspot.properties import BAN_PROPERTY
from warp_sync_pipeline.core.ledger import (
    LedgerWrite,
    bind_company,
    definitely_not_applied,
    record_writes,
    void_writes,
)
from warp_sync_pipeline.core.links import link_unlinked
from warp_sync_pipeline.core.normalize import to_hubspot
from warp_sync_pipeline.core.sync_tables import customers

CREATE_CHUNK = 100  # HubSpot's batch limit
Progress = Callable[[str], None]


class CreateStatus(StrEnum):
    CREATED = "created"
    ADOPTED = "adopted"  # a company held the BAN already (an earlier run's, or one made by hand)
    FAILED = "failed"  # HubSpot refused the values (or only an archived company holds the BAN)
    UNKNOWN = "unknown"  # the answer was lost and no company holds the BAN yet: the next run looks again
    LINK_REFUSED = "link_refused"  # the customer was linked by someone else meanwhile


@dataclass(frozen=True)
class CreateOutcome:
    customer_id: str
    ban: str
    status: CreateStatus
    company_id: str | None = None
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class CreateRequest:
    """Who asks: the audit's trigger and run, and whether a created company gets its contact email's domain
    (`domain_of` says which domain, None for none)."""

    trigger: Trigger
    run_id: str | None
    domain_of: Callable[[str | None], str | None] | None = None
    actor: str | None = None  # a person's name, when a person asked (the link pages)


@dataclass(frozen=True)
class InitialValue:
    rule: FieldRule
    value: object  # WARP's
    text: str  # as HubSpot gets it


def initial_values(rules: FieldRules, row: Mapping[str, Any]) -> list[InitialValue]:
    """What a new company is made with, for every create (the API's and this step's): each mapped field the
    customer has a value for, payment_terms included (its initial value in HubSpot, which owns it afterwards)."""
    made = [InitialValue(rule, row.get(name), to_hubspot(rule.spec, row.get(name))) for name, rule in rules.items()]
    return [v for v in made if v.text != ""]


@dataclass(frozen=True)
class _NewCompany:
    customer_id: str
    ban: str
    properties: dict[str, str]
    writes: list[LedgerWrite]


def create_companies(engine: sa.Engine, client: HubSpotClient, customer_ids: Sequence[str], rules: FieldRules,
                     request: CreateRequest, *, progress: Progress | None = None) -> list[CreateOutcome]:
    """A company for each customer (one per BAN), 100 a call; one outcome per customer asked for."""
    outcomes: list[CreateOutcome] = []
    for start in range(0, len(customer_ids), CREATE_CHUNK):
        wanted = _new_companies(engine, customer_ids[start:start + CREATE_CHUNK], rules, request)
        ledger_ids = record_writes(engine, [w for new in wanted for w in new.writes])
        position = 0
        entries: dict[str, list[int]] = {}
        for new in wanted:
            entries[new.ban] = ledger_ids[position:position + len(new.writes)]
            position += len(new.writes)
        answers = client.batch_create_companies([new.properties for new in wanted])
        # Each result is matched by the warp_ban it echoes; by its place in the answer only where it echoes none.
        echoed = {a.company.properties.get(BAN_PROPERTY): a.company.id for a in answers
                  if a.company is not None and a.company.properties.get(BAN_PROPERTY)}
        for new, answer in zip(wanted, answers, strict=True):
            placed = answer.company.id if answer.company and not answer.company.properties.get(BAN_PROPERTY) else None
            outcomes.append(_settle(engine, client, new, echoed.get(new.ban, placed),
                                    answer.error if new.ban not in echoed else None, entries[new.ban], request))
        if progress is not None:
            progress(f"companies created: {min(start + CREATE_CHUNK, len(customer_ids)):,} of {len(customer_ids):,}")
    return outcomes


def _new_companies(engine: sa.Engine, customer_ids: Sequence[str], rules: FieldRules,
                   request: CreateRequest) -> list[_NewCompany]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(customers).where(customers.c.id.in_([UUID(c) for c in customer_ids]))
                            ).mappings().all()
    made: dict[str, _NewCompany] = {}
    for row in rows:
        values = initial_values(rules, row)
        properties = {BAN_PROPERTY: row["ban"], **{v.rule.hubspot_property: v.text for v in values}}
        writes = [LedgerWrite(v.rule, v.value, ban=row["ban"]) for v in values]
        domain = request.domain_of(row.get("contact_email")) if request.domain_of else None
        if domain:
            properties["domain"] = domain
        made.setdefault(row["ban"], _NewCompany(str(row["id"]), row["ban"], properties, writes))
    return list(made.values())  # one input per BAN within the call


def _settle(engine: sa.Engine, client: HubSpotClient, new: _NewCompany, company_id: str | None,
            error: HubSpotError | None, ledger_ids: list[int], request: CreateRequest) -> CreateOutcome:
    adopted = False
    held = isinstance(error, UniqueValueConflict) and error.property_name in (None, BAN_PROPERTY)
    if company_id is None and (held or not definitely_not_applied(error)):
        if held:  # refused: nothing of this request reached the holder, so its entries will see no echo
            void_writes(engine, ledger_ids, "create refused: the BAN is another company's")
        # Another run's company (or one made by hand) holds the BAN, or the answer was lost: find it by the BAN.
        company_id, adopted = _holder(client, new.ban), True
    if company_id is None:
        if held:  # only an archived company holds it: a person decides (restore it, or free the BAN)
            return _failed(engine, new, [], "BAN_HELD_BY_ARCHIVED_COMPANY", error, request)
        if definitely_not_applied(error):
            return _failed(engine, new, ledger_ids, error_code(error), error, request)
        # The ledger entries stay: the company may exist; the next run looks again.
        return CreateOutcome(new.customer_id, new.ban, CreateStatus.UNKNOWN, code=error_code(error) if error else None)
    bind_company(engine, new.ban, company_id)
    with engine.begin() as conn:
        linked = link_unlinked(conn, [(new.customer_id, company_id)])
        if linked:
            log_sync_many(conn, [SyncLogEntry(
                trigger=request.trigger, outcome=Outcome.APPLIED, customer_id=new.customer_id, ban=new.ban,
                direction=Direction.WARP_TO_HUBSPOT, run_id=request.run_id, actor=request.actor,
                reason="ADOPTED" if adopted else "CREATED", new_value=company_id,
                details={"company_id": company_id, "properties": sorted(new.properties)})])
    if not linked:
        return CreateOutcome(new.customer_id, new.ban, CreateStatus.LINK_REFUSED, company_id)
    return CreateOutcome(new.customer_id, new.ban, CreateStatus.ADOPTED if adopted else CreateStatus.CREATED,
                         company_id)


def _holder(client: HubSpotClient, ban: str) -> str | None:
    try:
        return client.get_company(ban, id_property=BAN_PROPERTY, properties=[BAN_PROPERTY]).id
    except NotFound:
        return None


def _failed(engine: sa.Engine, new: _NewCompany, ledger_ids: list[int], code: str, error: HubSpotError | None,
            request: CreateRequest) -> CreateOutcome:
    void_writes(engine, ledger_ids, f"create refused: {code}")
    with engine.begin() as conn:
        log_sync_many(conn, [SyncLogEntry(
            trigger=request.trigger, outcome=Outcome.FAILED, customer_id=new.customer_id, ban=new.ban,
            direction=Direction.WARP_TO_HUBSPOT, run_id=request.run_id, actor=request.actor, reason="CREATE_FAILED",
            error_code=code,
            error=str(error) if error else None)])
    return CreateOutcome(new.customer_id, new.ban, CreateStatus.FAILED, code=code,
                         message=str(error) if error else None)
