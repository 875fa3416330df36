"""Demo data: WARP customers and sandbox companies with every kind of difference, and what the plan must say.

`build_demo_data()` is pure: it lays out customers, companies and field state around a moment `now`, with
each rule's cases (one-way drift reverted, only one side changed, conflicts settled by HubSpot winning, by the
latest change, or sent to MANUAL review, no agreed value yet), values that only differ in form (equal after
normalisation), an invalid value, a HubSpot value holding markup, orphans on both sides, a customer linked to a
deleted company, one that needs a person, an unlinked customer its BAN finds, and a duplicate `warp_ban` made
through the sandbox's seeding switch (which skips HubSpot's uniqueness check). Every case states the plan
rows it must produce, from the rules as DESIGN.md words them, independently of the code that decides.

`seed_demo()` writes it: customers and field state into WARP, companies into the sandbox (`/_sandbox/companies/
seed`, so change times can be set in the past), and switches one two-way field to MANUAL (the seeded rules
have none) so a MANUAL conflict is among the cases.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from warp_sync_pipeline.core.audit import name_writer
from warp_sync_pipeline.core.decision import Action, Reason
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue, upsert_field_state
from warp_sync_pipeline.core.fields import SEEDED_RULES
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.normalize import FieldType, comparable, spec_for, to_hubspot
from warp_sync_pipeline.core.reconcile.frames import (
    COMPANY_MISSING,
    COMPANY_UNKNOWN_BAN,
    CUSTOMER_WITHOUT_COMPANY,
    LINK_NEEDS_REVIEW,
    now_utc,
)

# The seeded mapping (sql/002) plus the demo's one change: contact_email settled by a person.
DEMO_PROPERTIES = {rule.warp_field: rule.hubspot_property for rule in SEEDED_RULES}
MANUAL_FIELD = "contact_email"
BAN_BASE = 700_000_000
SCRIPT_NAME = '<script>alert("hi")</script> & Sons'

W2H, H2W, CONFLICT, INVALID = (
    Action.WRITE_TO_HUBSPOT.value, Action.WRITE_TO_WARP.value, Action.OPEN_CONFLICT.value, Action.SKIP_INVALID.value,
)

NAMES = ("Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Adatum", "Proseware")
NOUNS = ("Telecom", "Networks", "Logistics", "Retail", "Foods", "Energy", "Media", "Health")
STATUSES = ("ACTIVE", "ACTIVE", "ACTIVE", "PENDING", "SUSPENDED", "CLOSED")
TERMS = ("NET30", "NET15", "NET45", "PREPAID", "NET60")
SERVICE_SETS = ({"voice": True, "messaging": False, "data": True}, {"voice": True, "messaging": True, "data": True},
                {"voice": False, "messaging": False, "data": True}, {"voice": True, "messaging": False, "data": False})


@dataclass
class SeedCustomer:
    values: dict[str, Any]  # WARP column values (Decimal amounts, services dict)
    updated_at: datetime
    link: str = "linked"  # linked | unlinked | deleted
    company: int | None = None  # index into the companies
    # field -> (agreed, agreed_at, warp, warp_at, hubspot, hubspot_at); a field without an entry has no state
    state: dict[str, tuple[Any, datetime, Any, datetime, Any, datetime]] = field(default_factory=dict)
    case: str = "in_sync"


@dataclass
class SeedCompany:
    properties: dict[str, str]
    updated_at: datetime
    archived: bool = False


@dataclass(frozen=True)
class ExpectedRow:
    kind: str
    ban: str
    field: str | None = None
    action: str | None = None
    reason: str | None = None


@dataclass
class DemoData:
    customers: list[SeedCustomer]
    companies: list[SeedCompany]
    expected_changes: set[ExpectedRow]
    expected_orphans: set[ExpectedRow]
    expected_duplicates: dict[str, int]  # BAN -> companies holding it
    expected_links: set[str]  # BANs linked by the BAN fallback
    expected_agreements: set[ExpectedRow]
    manual_field: str
    cases: dict[str, int]
    created_at: datetime  # of every customer: before anything was agreed


def hubspot_text(warp_field: str, value: Any) -> str:
    """The string HubSpot holds for a WARP value (numbers as HubSpot keeps them: 10000.00 reads "10000")."""
    text = to_hubspot(warp_field, value)
    if spec_for(warp_field).type is FieldType.AMOUNT and text:
        text = format(Decimal(text).normalize(), "f")
    return text


def _base_values(n: int) -> dict[str, Any]:
    return {
        "ban": f"ZT-{BAN_BASE + n:09d}",
        "company_name": f"{NAMES[n % len(NAMES)]} {NOUNS[(n // len(NAMES)) % len(NOUNS)]} {n}",
        "status": STATUSES[n % len(STATUSES)],
        "credit_limit": Decimal((n * 37) % 400 * 125) / 2 + Decimal("500.00"),
        "current_balance": Decimal((n * 53) % 100_000) / 100 - Decimal("120.00"),
        "services": dict(SERVICE_SETS[n % len(SERVICE_SETS)]),
        "payment_terms": TERMS[n % len(TERMS)],
        "contact_email": f"billing{n}@{NAMES[n % len(NAMES)].lower()}-{n % 97}.example",
    }


class _Builder:
    def __init__(self, now: datetime, manual_field: str) -> None:
        self.now = now
        self.t0 = now - timedelta(days=30)
        self.manual_field = manual_field
        self.customers: list[SeedCustomer] = []
        self.companies: list[SeedCompany] = []
        self.changes: set[ExpectedRow] = set()
        self.orphans: set[ExpectedRow] = set()
        self.duplicates: dict[str, int] = {}
        self.links: set[str] = set()
        self.agreements: set[ExpectedRow] = set()
        self.numbers = itertools.count(1)
        self.spare_bans = itertools.count(BAN_BASE + 200_000_000)  # ZT-9..: never a customer's BAN
        self.cases: dict[str, int] = {}

    def ago(self, hours: float) -> datetime:
        return self.now - timedelta(hours=hours)

    def pair(self, case: str = "in_sync", *, with_state: bool = True) -> tuple[SeedCustomer, SeedCompany]:
        """A customer linked to its company, every field agreed 30 days ago."""
        values = _base_values(next(self.numbers))
        company = SeedCompany({DEMO_PROPERTIES[f]: hubspot_text(f, v) for f, v in values.items()}, self.t0)
        self.companies.append(company)
        customer = SeedCustomer(values, self.t0, company=len(self.companies) - 1, case=case)
        if with_state:
            for name, value in values.items():
                customer.state[name] = (value, self.t0, value, self.t0, value, self.t0)
        self.customers.append(customer)
        self.cases[case] = self.cases.get(case, 0) + 1
        return customer, company

    def warp_edit(self, customer: SeedCustomer, name: str, value: Any, at: datetime) -> None:
        """WARP changed a field at `at` (the outbound trigger records that time in the field state)."""
        customer.values[name] = value
        customer.updated_at = max(customer.updated_at, at)
        if name in customer.state:
            agreed, agreed_at, _, _, hubspot, hubspot_at = customer.state[name]
            customer.state[name] = (agreed, agreed_at, value, at, hubspot, hubspot_at)
        else:  # nothing agreed yet: the trigger still records WARP's change
            customer.state[name] = (None, None, value, at, None, None)

    def hubspot_edit(self, company: SeedCompany, name: str, text: str, at: datetime) -> None:
        company.properties[DEMO_PROPERTIES[name]] = text
        company.updated_at = max(company.updated_at, at)

    def expect(self, customer: SeedCustomer, name: str, action: str, reason: Reason) -> None:
        self.changes.add(ExpectedRow("change", customer.values["ban"], name, action, reason.value))


def build_demo_data(customers: int = 1000, *, now: datetime | None = None, manual_field: str = MANUAL_FIELD,
                    include_invalid: bool = True, with_cases: bool = True) -> DemoData:
    """About `customers` customers; each case appears max(1, customers // 1000) times, the rest are in sync
    (all of them without `with_cases`)."""
    b = _Builder(now or now_utc(), manual_field)
    copies = max(1, customers // 1000) if with_cases else 0
    cases = _Cases(b, include_invalid).all()
    for _ in range(copies):
        for make in cases:
            make()
    while len(b.customers) < customers:
        b.pair()
    return DemoData(b.customers, b.companies, b.changes, b.orphans, b.duplicates, b.links, b.agreements,
                    manual_field, b.cases, b.t0 - timedelta(days=1))


class _Cases:
    """Each kind of difference the demo lays out, one method each; `all()` lists them in seeding order."""

    def __init__(self, b: _Builder, include_invalid: bool) -> None:
        self.b = b
        self.include_invalid = include_invalid


    def name_only_warp(self) -> None:
        b = self.b
        c, _ = b.pair("name changed in WARP only")
        b.warp_edit(c, "company_name", c.values["company_name"] + " Holdings", b.ago(3))
        b.expect(c, "company_name", W2H, Reason.ONLY_WARP_CHANGED)

    def name_only_hubspot(self) -> None:
        b = self.b
        c, co = b.pair("name changed in HubSpot only")
        b.hubspot_edit(co, "company_name", c.values["company_name"] + " GmbH", b.ago(3))
        b.expect(c, "company_name", H2W, Reason.ONLY_HUBSPOT_CHANGED)

    def name_markup_from_hubspot(self) -> None:
        b = self.b
        c, co = b.pair("HubSpot name holding markup")
        b.hubspot_edit(co, "company_name", SCRIPT_NAME, b.ago(2))
        b.expect(c, "company_name", H2W, Reason.ONLY_HUBSPOT_CHANGED)

    def name_conflict_warp_newer(self) -> None:
        b = self.b
        c, co = b.pair("name changed on both sides, WARP later")
        b.hubspot_edit(co, "company_name", c.values["company_name"] + " Inc", b.ago(5))
        b.warp_edit(c, "company_name", c.values["company_name"] + " Group", b.ago(1))
        b.expect(c, "company_name", W2H, Reason.CONFLICT_LATEST_WINS_WARP_NEWER)

    def name_conflict_hubspot_newer(self) -> None:
        b = self.b
        c, co = b.pair("name changed on both sides, HubSpot later")
        b.warp_edit(c, "company_name", c.values["company_name"] + " Group", b.ago(5))
        b.hubspot_edit(co, "company_name", c.values["company_name"] + " Inc", b.ago(1))
        b.expect(c, "company_name", H2W, Reason.CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE)

    def name_never_agreed(self) -> None:
        b = self.b
        c, co = b.pair("name never agreed")
        del c.state["company_name"]
        b.hubspot_edit(co, "company_name", c.values["company_name"] + " Ltd", b.ago(4))
        b.warp_edit(c, "company_name", c.values["company_name"] + " plc", b.ago(2))
        b.expect(c, "company_name", W2H, Reason.NO_AGREED_VALUE_LATEST_WINS_WARP_NEWER)

    def status_drift(self) -> None:
        b = self.b
        c, co = b.pair("status edited in HubSpot (drift)")
        other = "SUSPENDED" if c.values["status"] != "SUSPENDED" else "ACTIVE"
        b.hubspot_edit(co, "status", other, b.ago(6))
        b.expect(c, "status", W2H, Reason.HUBSPOT_DRIFT_REVERTED)

    def status_from_warp(self) -> None:
        b = self.b
        c, _ = b.pair("status changed in WARP")
        b.warp_edit(c, "status", "CLOSED" if c.values["status"] != "CLOSED" else "ACTIVE", b.ago(6))
        b.expect(c, "status", W2H, Reason.ONE_WAY_FROM_WARP)

    def credit_only_warp(self) -> None:
        b = self.b
        c, _ = b.pair("credit limit changed in WARP only")
        b.warp_edit(c, "credit_limit", c.values["credit_limit"] + 1000, b.ago(8))
        b.expect(c, "credit_limit", W2H, Reason.ONLY_WARP_CHANGED)

    def credit_only_hubspot(self) -> None:
        b = self.b
        c, co = b.pair("credit limit changed in HubSpot only")
        b.hubspot_edit(co, "credit_limit", hubspot_text("credit_limit", c.values["credit_limit"] + 250), b.ago(8))
        b.expect(c, "credit_limit", H2W, Reason.ONLY_HUBSPOT_CHANGED)

    def credit_conflict(self) -> None:
        b = self.b
        c, co = b.pair("credit limit changed on both sides (HubSpot wins)")
        b.hubspot_edit(co, "credit_limit", hubspot_text("credit_limit", c.values["credit_limit"] + 500), b.ago(9))
        b.warp_edit(c, "credit_limit", c.values["credit_limit"] + 700, b.ago(1))
        b.expect(c, "credit_limit", H2W, Reason.CONFLICT_HUBSPOT_WINS)

    def credit_form_only(self) -> None:
        b = self.b
        c, co = b.pair("credit limit equal in another form")
        co.properties["warp_credit_limit"] = format(c.values["credit_limit"], "f") + "0"  # "12500.000"

    def balance_from_warp(self) -> None:
        b = self.b
        c, _ = b.pair("balance changed in WARP")
        b.warp_edit(c, "current_balance", c.values["current_balance"] - Decimal("42.17"), b.ago(2))
        b.expect(c, "current_balance", W2H, Reason.ONE_WAY_FROM_WARP)

    def services_drift(self) -> None:
        b = self.b
        c, co = b.pair("services edited in HubSpot (drift)")
        b.hubspot_edit(co, "services", "messaging", b.ago(7))
        b.expect(c, "services", W2H, Reason.HUBSPOT_DRIFT_REVERTED)

    def services_order_only(self) -> None:
        b = self.b
        c, co = b.pair("services equal in another order")
        enabled = [name for name, on in c.values["services"].items() if on]
        co.properties["warp_services"] = ";".join(reversed(enabled))

    def terms_from_hubspot(self) -> None:
        b = self.b
        c, co = b.pair("payment terms changed in HubSpot")
        b.hubspot_edit(co, "payment_terms", "NET60" if c.values["payment_terms"] != "NET60" else "NET15", b.ago(5))
        b.expect(c, "payment_terms", H2W, Reason.ONE_WAY_FROM_HUBSPOT)

    def terms_warp_drift(self) -> None:
        b = self.b
        c, _ = b.pair("payment terms edited in WARP (drift)")
        b.warp_edit(c, "payment_terms", "PREPAID" if c.values["payment_terms"] != "PREPAID" else "NET30", b.ago(5))
        b.expect(c, "payment_terms", H2W, Reason.WARP_DRIFT_REVERTED)

    def email_case_only(self) -> None:
        b = self.b
        c, co = b.pair("contact email equal in another case")
        co.properties["warp_contact_email"] = c.values["contact_email"].upper()

    def email_manual_conflict(self) -> None:
        b = self.b
        c, co = b.pair("contact email changed on both sides (MANUAL)")
        b.hubspot_edit(co, "contact_email", "ap@" + c.values["contact_email"].split("@")[1], b.ago(3))
        b.warp_edit(c, "contact_email", "finance@" + c.values["contact_email"].split("@")[1], b.ago(2))
        strategy_reason = Reason.CONFLICT_MANUAL_REVIEW if b.manual_field == "contact_email" else \
            Reason.CONFLICT_LATEST_WINS_WARP_NEWER
        b.expect(c, "contact_email", CONFLICT if b.manual_field == "contact_email" else W2H, strategy_reason)

    def email_only_hubspot(self) -> None:
        b = self.b
        c, co = b.pair("contact email changed in HubSpot only")
        b.hubspot_edit(co, "contact_email", "invoices@" + c.values["contact_email"].split("@")[1], b.ago(4))
        b.expect(c, "contact_email", H2W, Reason.ONLY_HUBSPOT_CHANGED)

    def ban_drift(self) -> None:
        b = self.b
        c, co = b.pair("warp_ban edited in HubSpot (drift)")
        b.hubspot_edit(co, "ban", f"ZT-{next(b.spare_bans):09d}", b.ago(10))
        b.expect(c, "ban", W2H, Reason.HUBSPOT_DRIFT_REVERTED)

    def invalid_in_hubspot(self) -> None:
        b = self.b
        c, co = b.pair("credit limit invalid in HubSpot")
        b.hubspot_edit(co, "credit_limit", "12.345", b.ago(3))
        b.expect(c, "credit_limit", INVALID, Reason.HUBSPOT_VALUE_INVALID)

    def agreement_missing(self) -> None:
        b = self.b
        c, _ = b.pair("in sync, agreed value never recorded")
        del c.state["payment_terms"]
        b.agreements.add(ExpectedRow("agreement", c.values["ban"], "payment_terms", Action.IN_SYNC.value,
                                     Reason.EQUAL.value))

    def linked_by_ban(self) -> None:
        b = self.b
        c, _ = b.pair("unlinked customer its BAN finds", with_state=False)
        c.link = "unlinked"
        b.links.add(c.values["ban"])
        for name in c.values:
            b.agreements.add(ExpectedRow("agreement", c.values["ban"], name, Action.IN_SYNC.value, Reason.EQUAL.value))

    def customer_without_company(self) -> None:
        b = self.b
        c, _ = b.pair("customer without a company")
        b.companies.pop()
        c.company, c.link, c.state = None, "unlinked", {}
        b.orphans.add(ExpectedRow(CUSTOMER_WITHOUT_COMPANY, c.values["ban"]))

    def company_unknown_ban(self) -> None:
        b = self.b
        values = _base_values(next(b.numbers))
        values["ban"] = f"ZT-{next(b.spare_bans):09d}"
        b.companies.append(SeedCompany({DEMO_PROPERTIES[f]: hubspot_text(f, v) for f, v in values.items()}, b.t0))
        b.orphans.add(ExpectedRow(COMPANY_UNKNOWN_BAN, values["ban"]))
        b.cases["company whose BAN WARP does not know"] = b.cases.get("company whose BAN WARP does not know", 0) + 1

    def company_deleted(self) -> None:
        b = self.b
        c, co = b.pair("customer linked to a deleted company")
        co.archived = True
        b.orphans.add(ExpectedRow(COMPANY_MISSING, c.values["ban"]))

    def link_needs_review(self) -> None:
        b = self.b
        c, co = b.pair("customer whose link a person must settle")
        co.archived = True
        c.link = "deleted"
        b.orphans.add(ExpectedRow(LINK_NEEDS_REVIEW, c.values["ban"]))

    def duplicate_ban(self) -> None:
        b = self.b
        c, co = b.pair("one warp_ban on two companies")
        copy = SeedCompany(dict(co.properties), b.ago(48))
        copy.properties["name"] = c.values["company_name"] + " (duplicate)"
        b.companies.append(copy)
        b.duplicates[c.values["ban"]] = 2

    def prospect_without_ban(self) -> None:
        b = self.b
        b.companies.append(SeedCompany({"name": f"Prospect {next(b.numbers)}"}, b.t0))
        b.cases["HubSpot prospect (no warp_ban)"] = b.cases.get("HubSpot prospect (no warp_ban)", 0) + 1

    def all(self) -> list[Callable[[], None]]:
        cases = [
            self.name_only_warp, self.name_only_hubspot, self.name_markup_from_hubspot, self.name_conflict_warp_newer,
            self.name_conflict_hubspot_newer, self.name_never_agreed, self.status_drift, self.status_from_warp,
            self.credit_only_warp, self.credit_only_hubspot, self.credit_conflict, self.credit_form_only,
            self.balance_from_warp, self.services_drift, self.services_order_only, self.terms_from_hubspot,
            self.terms_warp_drift, self.email_case_only, self.email_manual_conflict, self.email_only_hubspot,
            self.ban_drift, self.agreement_missing, self.linked_by_ban, self.customer_without_company,
            self.company_unknown_ban, self.company_deleted, self.link_needs_review, self.duplicate_ban,
            self.prospect_without_ban,
        ]
        if self.include_invalid:
            cases.append(self.invalid_in_hubspot)
        return cases


# --- writing it ---------------------------------------------------------------------------------------------

_customers = sa.Table(
    "customers", sa.MetaData(),
    sa.Column("id", sa.Uuid), sa.Column("ban", sa.Text), sa.Column("company_name", sa.Text),
    sa.Column("status", sa.Text), sa.Column("credit_limit", sa.Numeric), sa.Column("current_balance", sa.Numeric),
    sa.Column("services", JSONB), sa.Column("payment_terms", sa.Text), sa.Column("contact_email", sa.Text),
    sa.Column("external_ids", JSONB), sa.Column("hubspot_link_status", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)), sa.Column("updated_at", sa.DateTime(timezone=True)),
)


class DemoSeedError(RuntimeError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class SeededDemo:
    data: DemoData
    customer_ids: dict[str, str]  # BAN -> customer id
    company_ids: list[str]  # in the order of data.companies


def seed_demo(
    engine: sa.Engine,
    *,
    client: HubSpotClient,
    seed_companies: Callable[[list[dict[str, Any]]], list[str]],
    customers: int = 1000,
    now: datetime | None = None,
    manual_field: str | None = MANUAL_FIELD,
    include_invalid: bool = True,
    with_cases: bool = True,
    replace: bool = False,
    chunk: int = 10_000,
) -> SeededDemo:
    """Seed WARP and the sandbox. `seed_companies` is the sandbox's seeding switch (SandboxControl.seed).

    Refuses (DEMO_DATA_PRESENT) when WARP already has customers, unless `replace`, which empties the customer
    tables (TRUNCATE ... CASCADE): only ever point it at a demo database.
    """
    data = build_demo_data(customers, now=now, manual_field=manual_field or "", include_invalid=include_invalid,
                           with_cases=with_cases)
    with engine.begin() as conn:
        existing = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()
        if existing and not replace:
            raise DemoSeedError("DEMO_DATA_PRESENT", f"WARP already holds {existing} customers; pass replace to empty "
                                "the demo database first")
        if existing:
            conn.execute(sa.text("TRUNCATE customers, hubspot_write_ledger CASCADE"))
    client.ensure_properties()
    company_ids: list[str] = []
    entries = [{"properties": co.properties, "createdAt": _iso(co.updated_at), "updatedAt": _iso(co.updated_at),
                "archived": co.archived} for co in data.companies]
    for start in range(0, len(entries), chunk):
        company_ids += seed_companies(entries[start:start + chunk])
    customer_ids: dict[str, str] = {}
    with engine.begin() as conn:
        name_writer(conn, actor="demo-seed")
        if manual_field:
            conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL', updated_at = now() "
                                 "WHERE warp_field = :field AND direction = 'BIDIRECTIONAL'"), {"field": manual_field})
        rows = []
        for customer in data.customers:
            linked = customer.company is not None and customer.link != "unlinked"
            rows.append({
                **customer.values,
                "external_ids": {"hubspot_company_id": company_ids[customer.company]} if linked else {},
                "hubspot_link_status": customer.link,
                "created_at": data.created_at,
                "updated_at": customer.updated_at,
            })
        for start in range(0, len(rows), chunk):
            result = conn.execute(sa.insert(_customers).returning(_customers.c.id, _customers.c.ban,
                                                                  sort_by_parameter_order=True), rows[start:start + chunk])
            customer_ids.update({ban: str(cid) for cid, ban in result})
        updates = [
            FieldStateUpdate(customer_ids[c.values["ban"]], name,
                             agreed=None if agreed_at is None else StateValue(comparable(name, agreed), agreed_at),
                             warp=StateValue(comparable(name, warp), warp_at),
                             hubspot=None if hubspot_at is None else StateValue(comparable(name, hubspot), hubspot_at))
            for c in data.customers for name, (agreed, agreed_at, warp, warp_at, hubspot, hubspot_at) in c.state.items()
        ]
        for start in range(0, len(updates), chunk * 8):
            upsert_field_state(conn, updates[start:start + chunk * 8], values_are_comparable=True)
    return SeededDemo(data, customer_ids, company_ids)


def _iso(moment: datetime) -> str:
    return moment.isoformat()
