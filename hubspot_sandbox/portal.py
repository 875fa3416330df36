"""The sandbox's HubSpot portal in memory: companies with per-property history, properties, groups.

One re-entrant lock guards everything; each public method is one atomic step (a whole batch is
validated before any of it is written), so concurrent requests see HubSpot-like consistency.
Every change reports the webhook events it causes through `on_events`.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hubspot_sandbox.properties import (
    ALWAYS_RETURNED,
    DEFAULT_GROUPS,
    DEFAULT_RETURNED,
    MAX_UNIQUE_PROPERTIES,
    SYSTEM_PROPERTIES,
    PropertyDefinition,
    RefusedValue,
    normalize_value,
    standard_properties,
    validate_definition,
    wire_options,
    wire_text,
)
from hubspot_sandbox.wire import (
    ApiFailure,
    PropertyProblem,
    bad_request,
    iso_ms,
    not_found,
    now_ms,
    parse_time_ms,
    record_id,
    validation_failure,
)

# Real company ids are large numbers; starting high catches code that assumes small ones.
FIRST_COMPANY_ID = 40_000_000_001
OBJECT_TYPE_ID = "0-2"


@dataclass(frozen=True)
class WriteSource:
    """Who changed a value: `source_type` is the history sourceType and the webhook changeSource."""

    source_type: str
    source_id: str | None = None
    user_id: int | None = None

    def history_entry(self, value: str, timestamp_ms: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"value": value, "timestamp": iso_ms(timestamp_ms), "sourceType": self.source_type}
        if self.source_id is not None:
            entry["sourceId"] = self.source_id
        if self.user_id is not None:
            entry["updatedByUserId"] = self.user_id
        return entry


# (value, timestamp ms, source): tuples keep 100k companies' history small.
HistoryEntry = tuple[str, int, WriteSource]


@dataclass
class Company:
    id: int
    values: dict[str, str]
    history: dict[str, list[HistoryEntry]]
    created_ms: int
    updated_ms: int
    archived_ms: int | None = None
    merged_into: int | None = None

    @property
    def active(self) -> bool:
        return self.archived_ms is None


@dataclass
class WebhookEvent:
    """A change HubSpot would notify subscribers of; the dispatcher adds ids and delivery fields."""

    subscription_type: str
    object_id: int
    occurred_ms: int
    source: WriteSource
    property_name: str | None = None
    property_value: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class WriteInput:
    properties: dict[str, Any]
    id: str | None = None
    id_property: str | None = None
    trace_id: str | None = None


@dataclass
class WriteResult:
    company_id: int
    new: bool
    trace_id: str | None
    written: list[str]


@dataclass(frozen=True)
class ForcedFailure:
    """A validation failure the fault switch imposes on one property."""

    code: str
    message: str | None = None


class Portal:
    def __init__(self, portal_id: int) -> None:
        self.lock = threading.RLock()
        self.portal_id = portal_id
        self.unique_conflict_form = "validation_400"  # set from the sandbox's settings
        self.on_events: Callable[[list[WebhookEvent]], None] = lambda events: None
        self._next_id = FIRST_COMPANY_ID
        self.reset()

    # --- state -------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to a new portal: no companies, standard properties and groups only."""
        with self.lock:
            created = now_ms()
            self.companies: dict[int, Company] = {}
            self.order: list[int] = []  # every company id, ascending (ids only grow)
            self.properties: dict[str, PropertyDefinition] = standard_properties(created)
            self.archived_properties: dict[str, PropertyDefinition] = {}
            self.groups: dict[str, dict[str, Any]] = {
                name: {"name": name, "label": label, "displayOrder": order, "archived": False}
                for name, label, order in DEFAULT_GROUPS
            }
            self.unique_index: dict[str, dict[str, set[int]]] = {}

    # --- properties ----------------------------------------------------------------------------
    def list_properties(self, archived: bool) -> list[dict[str, Any]]:
        with self.lock:
            source = self.archived_properties if archived else self.properties
            return [d.to_wire() for d in source.values()]

    def get_property(self, name: str, archived: bool = False) -> dict[str, Any]:
        with self.lock:
            definition = (self.archived_properties if archived else self.properties).get(name)
            if definition is None:
                raise not_found(f"Unable to find property {name} on object type {OBJECT_TYPE_ID}",
                                propertyName=[name])
            return definition.to_wire()

    def create_property(self, payload: Any) -> dict[str, Any]:
        with self.lock:
            definition = self._new_definition(payload)
            self.properties[definition.name] = definition
            self.archived_properties.pop(definition.name, None)
            if definition.has_unique_value:
                self.unique_index[definition.name] = {}
            return definition.to_wire()

    def _new_definition(self, payload: Any) -> PropertyDefinition:
        if not isinstance(payload, dict):
            raise bad_request("A property definition must be a JSON object.")
        problems = validate_definition(payload, existing_groups=set(self.groups))
        if problems:
            raise bad_request("Invalid property definition: " + "; ".join(problems))
        name = payload["name"]
        if name in self.properties:
            raise ApiFailure(409, "OBJECT_ALREADY_EXISTS", f"Property named '{name}' already exists.",
                             context={"name": [name]})
        unique = bool(payload.get("hasUniqueValue", False))
        if unique and sum(d.has_unique_value for d in self.properties.values()) >= MAX_UNIQUE_PROPERTIES:
            raise bad_request(f"An object type may have at most {MAX_UNIQUE_PROPERTIES} unique properties.")
        created = now_ms()
        return PropertyDefinition(
            name=name, label=payload["label"], type=payload["type"], field_type=payload["fieldType"],
            group_name=payload["groupName"], created_ms=created, updated_ms=created,
            description=str(payload.get("description") or ""), options=wire_options(payload.get("options")),
            display_order=display_order(payload.get("displayOrder", -1)), has_unique_value=unique,
            hidden=bool(payload.get("hidden", False)), form_field=bool(payload.get("formField", True)),
        )

    def create_properties(self, payloads: list[Any]) -> tuple[list[dict[str, Any]], list[ApiFailure]]:
        """Batch create: invalid definitions fail the whole batch; names that exist are per-input errors."""
        with self.lock:
            for payload in payloads:
                if not isinstance(payload, dict):
                    raise bad_request("Each input must be a property definition object.")
                problems = validate_definition(payload, existing_groups=set(self.groups))
                if problems:
                    raise bad_request(f"Invalid property definition {payload.get('name')!r}: " + "; ".join(problems))
            created, failures = [], []
            for payload in payloads:
                try:
                    created.append(self.create_property(payload))
                except ApiFailure as failure:
                    failures.append(failure)
            return created, failures

    def update_property(self, name: str, payload: Any) -> dict[str, Any]:
        with self.lock:
            definition = self.properties.get(name)
            if definition is None:
                raise not_found(f"Unable to find property {name} on object type {OBJECT_TYPE_ID}",
                                propertyName=[name])
            if not isinstance(payload, dict):
                raise bad_request("A property update must be a JSON object.")
            if "hasUniqueValue" in payload and bool(payload["hasUniqueValue"]) != definition.has_unique_value:
                raise bad_request(f"hasUniqueValue of {name} cannot be changed after creation.")
            if definition.hubspot_defined and set(payload) - {"label", "description", "displayOrder", "hidden",
                                                              "options", "groupName"}:
                raise bad_request(f"{name} is a HubSpot-defined property; only its label, description, display "
                                  "order, options, group and visibility can change.")
            merged = {"name": name, "label": definition.label, "type": definition.type,
                      "fieldType": definition.field_type, "groupName": definition.group_name,
                      "options": definition.options}
            merged.update({k: v for k, v in payload.items() if k != "name"})
            problems = validate_definition(merged, existing_groups=set(self.groups))
            if problems:
                raise bad_request("Invalid property definition: " + "; ".join(problems))
            definition.label = merged["label"]
            definition.type = merged["type"]
            definition.field_type = merged["fieldType"]
            definition.group_name = merged["groupName"]
            definition.options = wire_options(merged["options"])
            definition.description = str(merged.get("description", definition.description) or "")
            definition.display_order = display_order(merged.get("displayOrder", definition.display_order))
            definition.hidden = bool(merged.get("hidden", definition.hidden))
            definition.updated_ms = now_ms()
            return definition.to_wire()

    def archive_property(self, name: str, *, missing_ok: bool = False) -> None:
        with self.lock:
            definition = self.properties.get(name)
            if definition is None:
                if missing_ok:
                    return
                raise not_found(f"Unable to find property {name} on object type {OBJECT_TYPE_ID}",
                                propertyName=[name])
            if definition.hubspot_defined:
                raise bad_request(f"{name} is a HubSpot-defined property and cannot be archived.")
            del self.properties[name]
            definition.archived_ms = now_ms()
            self.archived_properties[name] = definition
            self.unique_index.pop(name, None)
            # Values of an archived property are gone from reads; the sandbox drops them outright.
            for company in self.companies.values():
                company.values.pop(name, None)
                company.history.pop(name, None)

    def list_groups(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(g) for g in self.groups.values()]

    def get_group(self, name: str) -> dict[str, Any]:
        with self.lock:
            if name not in self.groups:
                raise not_found(f"Unable to find property group {name}", groupName=[name])
            return dict(self.groups[name])

    def create_group(self, payload: Any) -> dict[str, Any]:
        with self.lock:
            if not isinstance(payload, dict) or not payload.get("name") or not payload.get("label"):
                raise bad_request("A property group needs a name and a label.")
            name = str(payload["name"])
            if name in self.groups:
                raise ApiFailure(409, "OBJECT_ALREADY_EXISTS", f"Property group named '{name}' already exists.",
                                 context={"name": [name]})
            group = {"name": name, "label": str(payload["label"]),
                     "displayOrder": display_order(payload.get("displayOrder", -1)), "archived": False}
            self.groups[name] = group
            return dict(group)

    def update_group(self, name: str, payload: Any) -> dict[str, Any]:
        with self.lock:
            group = self.groups.get(name)
            if group is None:
                raise not_found(f"Unable to find property group {name}", groupName=[name])
            if not isinstance(payload, dict):
                raise bad_request("A property group update must be a JSON object.")
            if "label" in payload:
                group["label"] = str(payload["label"])
            if "displayOrder" in payload:
                group["displayOrder"] = display_order(payload["displayOrder"])
            return dict(group)

    def archive_group(self, name: str) -> None:
        with self.lock:
            if name not in self.groups:
                raise not_found(f"Unable to find property group {name}", groupName=[name])
            if any(d.group_name == name for d in self.properties.values()):
                raise bad_request(f"Property group {name} still holds properties; move or archive them first.")
            del self.groups[name]

    # --- lookups ------------------------------------------------------------------------------
    def check_id_property(self, id_property: str | None, *, verb: str) -> str | None:
        """None for lookups by record id; otherwise the unique property named (400 if it is not one)."""
        if id_property is not None and not isinstance(id_property, str):
            raise bad_request("idProperty must be a property name (a string).")
        if id_property in (None, "") and verb != "upsert":
            return None
        if id_property == "hs_object_id" and verb != "upsert":
            return None
        with self.lock:
            definition = self.properties.get(id_property or "")
            if definition is None and id_property:
                raise bad_request(f'Property "{id_property}" does not exist', propertyName=[id_property])
            if definition is None or not definition.has_unique_value:
                raise bad_request(f"Unable to perform {verb} by non-unique {OBJECT_TYPE_ID} property "
                                  f"{id_property or 'hs_object_id'} in portal ID {self.portal_id}",
                                  propertyName=[id_property or "hs_object_id"])
            return id_property

    def find(self, id_value: str, id_property: str | None = None, *, archived: bool = False) -> Company | None:
        with self.lock:
            if id_property is None:
                company = self.companies.get(record_id(id_value))
                while company is not None and company.merged_into is not None:
                    company = self.companies.get(company.merged_into)
            else:
                company = self._find_by_unique(id_property, str(id_value), archived)
            if company is None or company.active == archived:
                return None
            return company

    def find_by_value(self, name: str, value: str) -> Company | None:
        """The first active company whose `name` holds `value` (any property; a scan, for the control API)."""
        with self.lock:
            for company_id in self.order:
                company = self.companies[company_id]
                if company.active and company.values.get(name) == value:
                    return company
            return None

    def _find_by_unique(self, name: str, value: str, archived: bool) -> Company | None:
        if not archived:
            holders = self.unique_index.get(name, {}).get(value)
            return self.companies[min(holders)] if holders else None
        for company_id in self.order:
            company = self.companies[company_id]
            if not company.active and company.merged_into is None and company.values.get(name) == value:
                return company
        return None

    # --- rendering --------------------------------------------------------------------------------
    def render(self, company: Company, properties: list[str] | None = None,
               history: list[str] | None = None, *, nulls: bool = True) -> dict[str, Any]:
        """A company in HubSpot's SimplePublicObject shape (values always strings)."""
        with self.lock:
            values = company.values
            rendered: dict[str, str | None] = {}
            for name in ALWAYS_RETURNED:
                rendered[name] = values.get(name)
            if properties:
                for name in properties:
                    if name in self.properties and (name in values or nulls):
                        rendered[name] = values.get(name)
            else:
                for name in DEFAULT_RETURNED:
                    if name in values:
                        rendered[name] = values[name]
            body: dict[str, Any] = {"id": str(company.id), "properties": dict(sorted(rendered.items()))}
            if history:
                body["propertiesWithHistory"] = {
                    name: [source.history_entry(value, ts) for value, ts, source in
                           reversed(company.history.get(name, []))]
                    for name in history if name in self.properties
                }
            body["createdAt"] = iso_ms(company.created_ms)
            body["updatedAt"] = iso_ms(company.updated_ms)
            body["archived"] = not company.active
            if company.archived_ms is not None:
                body["archivedAt"] = iso_ms(company.archived_ms)
            return body

    def render_written(self, result: WriteResult) -> dict[str, Any]:
        """The echo of a write: the written properties plus HubSpot's system ones, as real responses do."""
        with self.lock:
            company = self.companies[result.company_id]
            names = [n for n in result.written if n in self.properties]
            body = self.render(company, names or None, nulls=False)
            for name in names:
                body["properties"].setdefault(name, company.values.get(name, ""))
                if body["properties"][name] is None:
                    body["properties"][name] = ""
            body["properties"] = dict(sorted(body["properties"].items()))
            if result.trace_id is not None:
                body["objectWriteTraceId"] = result.trace_id
            return body

    def snapshot(self, *, include_history: bool = False) -> list[dict[str, Any]]:
        """Every company, archived and merged ones too, with all values (for tests to inspect)."""
        with self.lock:
            result = []
            for company_id in self.order:
                company = self.companies[company_id]
                entry: dict[str, Any] = {
                    "id": str(company.id), "properties": dict(sorted(company.values.items())),
                    "createdAt": iso_ms(company.created_ms), "updatedAt": iso_ms(company.updated_ms),
                    "archived": not company.active,
                    "archivedAt": iso_ms(company.archived_ms) if company.archived_ms is not None else None,
                    "mergedInto": str(company.merged_into) if company.merged_into is not None else None,
                }
                if include_history:
                    entry["propertiesWithHistory"] = {
                        name: [source.history_entry(v, ts) for v, ts, source in reversed(entries)]
                        for name, entries in sorted(company.history.items())
                    }
                result.append(entry)
            return result

    # --- reads ----------------------------------------------------------------------------------
    def page(self, after: int | None, limit: int, *, archived: bool) -> tuple[list[Company], int | None]:
        """Up to `limit` companies with id >= after, in id order, and the cursor of the next page."""
        with self.lock:
            start = bisect.bisect_left(self.order, after) if after is not None else 0
            chosen: list[Company] = []
            order = self.order
            for index in range(start, len(order)):
                company = self.companies[order[index]]
                if company.active != archived and company.merged_into is None:
                    if len(chosen) == limit:
                        return chosen, company.id
                    chosen.append(company)
            return chosen, None

    def active_companies(self) -> list[Company]:
        with self.lock:
            companies = self.companies
            return [c for c in map(companies.__getitem__, self.order) if c.archived_ms is None]

    # --- writes ---------------------------------------------------------------------------------
    def write_batch(self, kind: str, inputs: list[WriteInput], source: WriteSource, *, partial: bool,
                    forced: dict[str, ForcedFailure] | None = None,
                    timestamp: int | None = None) -> list[WriteResult | ApiFailure]:
        """Create, update or upsert companies as one step.

        Every input is checked first (target, property values, uniqueness against stored companies
        and the rest of the batch). Without `partial` one failure fails the batch and nothing is
        written; with it, failed inputs are reported in place and the others written.
        `timestamp` backdates the change (a rep's edit at a chosen time); default now.
        """
        forced = forced or {}
        with self.lock:
            outcomes: list[WriteResult | ApiFailure | None] = [None] * len(inputs)
            plans: list[tuple[int, Company | None, dict[str, str]]] = []
            claims: dict[tuple[str, str], Company | None] = {}
            for index, write in enumerate(inputs):
                try:
                    target = None
                    properties = dict(write.properties) if isinstance(write.properties, dict) else write.properties
                    if kind in ("update", "upsert"):
                        target = self.find(str(write.id), write.id_property)
                        if target is None and kind == "update":
                            raise not_found(
                                "Could not get some COMPANY objects, they may be deleted or not exist. "
                                "Check that ids are valid.", ids=[str(write.id)])
                        if target is None and write.id_property:
                            properties[write.id_property] = write.id
                    changes = self._prepare(properties, forced)
                    if target is None and changes.get("domain") and not changes.get("website"):
                        changes["website"] = changes["domain"]  # HubSpot fills website from domain
                    self._check_unique(changes, target, claims)
                    plans.append((index, target, changes))
                except ApiFailure as failure:
                    outcomes[index] = failure
            failures = [o for o in outcomes if isinstance(o, ApiFailure)]
            if failures and not partial:
                raise combine_failures(failures, self.portal_id)
            timestamp = timestamp if timestamp is not None else now_ms()
            events: list[WebhookEvent] = []
            for index, target, changes in plans:
                company = target if target is not None else self._new_company(timestamp, source, events)
                self._apply(company, changes, source, timestamp, events, force_touch=target is None)
                outcomes[index] = WriteResult(company.id, target is None, inputs[index].trace_id, list(changes))
            self.on_events(events)
            return [o for o in outcomes if o is not None]

    def _prepare(self, properties: Any, forced: dict[str, ForcedFailure]) -> dict[str, str]:
        if not isinstance(properties, dict):
            raise bad_request("properties must be a JSON object of property names to values.")
        problems: list[PropertyProblem] = []
        changes: dict[str, str] = {}
        for name, raw in properties.items():
            definition = self.properties.get(name)
            value_text = wire_text(raw)
            if definition is None:
                problems.append(PropertyProblem(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist',
                                                value_text))
                continue
            if definition.read_only_value or name in SYSTEM_PROPERTIES:
                problems.append(PropertyProblem(name, "READ_ONLY_VALUE",
                                                f'"{name}" is a read only property; its value cannot be set.',
                                                value_text))
                continue
            if name in forced:
                fault = forced[name]
                problems.append(PropertyProblem(
                    name, fault.code, fault.message or f"{value_text} was not a valid value for {name}.", value_text))
                continue
            try:
                changes[name] = normalize_value(definition, raw)
            except RefusedValue as refused:
                problems.append(refused.problem)
        if problems:
            raise validation_failure(problems, self.portal_id)
        return changes

    def _check_unique(self, changes: dict[str, str], target: Company | None,
                      claims: dict[tuple[str, str], Company | None]) -> None:
        own_id = target.id if target is not None else None
        for name, value in changes.items():
            definition = self.properties.get(name)
            if definition is None or not definition.has_unique_value or value == "":
                continue
            holders = {i for i in self.unique_index.get(name, {}).get(value, set()) if i != own_id}
            # A create aims at an id it never gets (the batch fails); HubSpot's message names one all the same.
            aimed_at = own_id if own_id is not None else self._next_id + len(claims)
            if holders:
                raise self._conflict(name, value, min(holders), aimed_at)
            if (name, value) in claims:
                other = claims[(name, value)]
                raise self._conflict(name, value, other.id if other is not None else None, aimed_at)
        for name, value in changes.items():
            definition = self.properties.get(name)
            if definition is not None and definition.has_unique_value and value != "":
                claims[(name, value)] = target

    def _conflict(self, name: str, value: str, existing_id: int | None, aimed_at: int) -> ApiFailure:
        return conflict(name, value, existing_id, aimed_at=aimed_at, form=self.unique_conflict_form,
                        portal_id=self.portal_id)

    def _new_company(self, timestamp: int, source: WriteSource, events: list[WebhookEvent],
                     created_ms: int | None = None) -> Company:
        company_id = self._next_id
        self._next_id += 1
        created = created_ms if created_ms is not None else timestamp
        company = Company(id=company_id, values={}, history={}, created_ms=created, updated_ms=created)
        for name, value in (("hs_object_id", str(company_id)), ("createdate", iso_ms(created))):
            company.values[name] = value
            company.history[name] = [(value, created, source)]
        company.values["hs_lastmodifieddate"] = iso_ms(created)
        # The record source (a gap in hubspot-api.md: the values of hs_object_source are taken to be the sources'
        # names, CRM_SETTING for a company made from a contact's domain); a seed may set its own.
        company.values["hs_object_source"] = source.source_type
        company.history["hs_object_source"] = [(source.source_type, created, source)]
        self.companies[company_id] = company
        self.order.append(company_id)
        events.append(WebhookEvent("company.creation", company_id, created, source))
        return company

    def _apply(self, company: Company, changes: dict[str, str], source: WriteSource, timestamp: int,
               events: list[WebhookEvent], *, force_touch: bool = False) -> list[str]:
        changed: list[str] = []
        for name, value in changes.items():
            if company.values.get(name, "") == value:
                continue
            self._unindex(company, name)
            if value == "":
                company.values.pop(name, None)
            else:
                company.values[name] = value
            self._index(company, name)
            company.history.setdefault(name, []).append((value, timestamp, source))
            changed.append(name)
            events.append(WebhookEvent("company.propertyChange", company.id, timestamp, source,
                                       property_name=name, property_value=value))
        if changed or force_touch:
            company.updated_ms = max(company.updated_ms, timestamp)
            company.values["hs_lastmodifieddate"] = iso_ms(company.updated_ms)
        return changed

    def _index(self, company: Company, name: str) -> None:
        index = self.unique_index.get(name)
        value = company.values.get(name)
        if index is not None and value and company.active:
            index.setdefault(value, set()).add(company.id)

    def _unindex(self, company: Company, name: str) -> None:
        index = self.unique_index.get(name)
        value = company.values.get(name)
        if index is not None and value in index:
            index[value].discard(company.id)
            if not index[value]:
                del index[value]

    def archive(self, ids: Iterable[str], source: WriteSource) -> list[int]:
        """Archive the companies that exist and are active; others are skipped, as HubSpot does."""
        with self.lock:
            timestamp = now_ms()
            events: list[WebhookEvent] = []
            archived: list[int] = []
            for id_value in ids:
                # By exact id only: an id merged away does not stand for the survivor here, so
                # archiving "our" company after a rep merged it can never archive the rep's one.
                company = self.companies.get(record_id(id_value))
                if company is None or not company.active or company.id in archived:
                    continue
                for name in list(self.unique_index):
                    self._unindex(company, name)
                company.archived_ms = timestamp
                archived.append(company.id)
                events.append(WebhookEvent("company.deletion", company.id, timestamp, source))
            self.on_events(events)
            return archived

    def merge(self, primary_id: Any, merged_id: Any, source: WriteSource) -> Company:
        """Merge `merged_id` into `primary_id` as HubSpot does since its 2024 change (hubspot-api.md, section 12):
        a new company with a new id takes the primary's values (gaps filled from the other), both old ids
        resolve to it, `hs_merged_object_ids` lists the ids merged in, and only the primary's unique values
        survive. The merge webhook's `newObjectId` is the new id."""
        with self.lock:
            primary = self.find(str(primary_id))
            merged = self.find(str(merged_id))
            missing = [str(i) for i, c in ((primary_id, primary), (merged_id, merged)) if c is None]
            if missing:
                raise not_found("Could not get some COMPANY objects, they may be deleted or not exist. "
                                "Check that ids are valid.", ids=missing)
            assert primary is not None and merged is not None
            if primary.id == merged.id:
                raise bad_request("A company cannot be merged with itself.")
            timestamp = now_ms()
            for name in list(self.unique_index):
                self._unindex(merged, name)
                self._unindex(primary, name)
            values = {name: value for name, value in merged.values.items()
                      if name not in SYSTEM_PROPERTIES and name not in self.unique_index}
            moved = sum(1 for name in values if not primary.values.get(name))  # gaps the other record filled
            values.update({name: value for name, value in primary.values.items() if name not in SYSTEM_PROPERTIES})
            earlier = [i for c in (primary, merged) for i in c.values.get("hs_merged_object_ids", "").split(";") if i]
            survivor = self._new_company(timestamp, source, [], created_ms=primary.created_ms)
            self._apply(survivor, {k: v for k, v in values.items() if v}, source, timestamp, [], force_touch=True)
            survivor.values["hs_merged_object_ids"] = ";".join([*earlier, str(primary.id), str(merged.id)])
            for old in (primary, merged):
                old.archived_ms = timestamp
                old.merged_into = survivor.id
            self.on_events([WebhookEvent(
                "company.merge", survivor.id, timestamp, source,
                extra={"primaryObjectId": primary.id, "mergedObjectIds": [merged.id], "newObjectId": survivor.id,
                       "numberOfPropertiesMoved": moved})])
            return survivor

    def seed(self, entries: list[Any], source: WriteSource) -> list[str]:
        """Store companies as given: no validation, no uniqueness, no webhooks (test data HubSpot can hold)."""
        with self.lock:
            prepared = []
            for position, entry in enumerate(entries):
                if not isinstance(entry, dict) or not isinstance(entry.get("properties", {}), dict):
                    raise bad_request(f"Seed entry {position} must be an object with a properties object.")
                values = {}
                for name, raw in entry.get("properties", {}).items():
                    if name not in self.properties:
                        raise bad_request(f'Seed entry {position}: property "{name}" does not exist',
                                          propertyName=[name])
                    text = wire_text(raw)
                    if text is None:
                        raise bad_request(f"Seed entry {position}: {name} must be a string, number or boolean.")
                    if text != "":
                        values[name] = text
                try:
                    created = parse_seed_time(entry.get("createdAt"))
                    updated = parse_seed_time(entry.get("updatedAt"))
                except ValueError as exc:
                    raise bad_request(f"Seed entry {position}: {exc}") from None
                prepared.append((values, created, updated, bool(entry.get("archived", False))))
            ids = []
            for values, created, updated, archived in prepared:
                timestamp = now_ms()
                # A company seeded as last changed at some past time was created no later than that.
                created_ms = created if created is not None else (updated if updated is not None else timestamp)
                company = self._new_company(timestamp, source, [], created_ms=created_ms)
                changed_at = updated if updated is not None else created_ms
                self._apply(company, values, source, changed_at, [])
                company.updated_ms = max(created_ms, changed_at)
                company.values["hs_lastmodifieddate"] = iso_ms(company.updated_ms)
                if archived:
                    for name in list(self.unique_index):
                        self._unindex(company, name)
                    company.archived_ms = company.updated_ms
                ids.append(str(company.id))
            return ids


def display_order(value: Any) -> int:
    """A displayOrder as HubSpot's schema has it (an integer): anything else is a 400, never a 500."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request("displayOrder must be an integer.")
    return value


def parse_seed_time(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return parse_time_ms(value)
    except (ValueError, TypeError):
        raise ValueError(f"{value!r} is not an ISO-8601 time or epoch milliseconds") from None


def conflict(name: str, value: str, existing_id: int | None, *, aimed_at: int, form: str,
             portal_id: int) -> ApiFailure:
    """A duplicate value of a unique property, in one of UNIQUE_CONFLICT_FORMS (config.py). `existing_id` is
    None when the value's other claimant is another input of the same batch (which has no id yet)."""
    if form in ("validation_400", "validation_400_unnamed"):
        holder = existing_id if existing_id is not None else "another input of this batch"
        if form == "validation_400_unnamed":
            holder = "another object"
        return ApiFailure(400, "VALIDATION_ERROR", (
            f"Cannot set PropertyValueCoordinates{{portalId={portal_id}, objectTypeId={OBJECT_TYPE_ID}, "
            f"propertyName={name}, value={value}}} on {aimed_at}. {holder} already has that value."))
    if form == "error_tokens":
        tokens = {"propertyName": [name], "propertyValue": [value]}
        if existing_id is not None:
            tokens["existingObjectId"] = [str(existing_id)]
        return ApiFailure(400, "VALIDATION_ERROR", f'The value "{value}" of unique property {name} is already in use.',
                          extra={"errorType": "UNIQUE_VALUE_CONFLICT", "errorTokens": tokens})
    context = {"propertyName": [name], "propertyValue": [value]}
    if existing_id is None:
        return ApiFailure(409, "CONFLICT", f'{name} "{value}" appears on more than one input of this batch; '
                                           "it is a unique property.", context=context)
    context["existingObjectId"] = [str(existing_id)]
    return ApiFailure(409, "CONFLICT", f'A company with {name} "{value}" already exists. Existing ID: {existing_id}',
                      context=context)


def combine_failures(failures: list[ApiFailure], portal_id: int) -> ApiFailure:
    """One answer for a batch that fails as a whole: every refused value together, else the first failure."""
    problems = [p for f in failures for p in f.problems]
    if problems:
        return validation_failure(problems, portal_id)
    missing = [i for f in failures if f.status == 404 and f.context for i in f.context.get("ids", [])]
    if missing and all(f.status == 404 for f in failures):
        # One OBJECT_NOT_FOUND naming every missing id (context.ids), as HubSpot's batch reads do.
        return not_found("Could not get some COMPANY objects, they may be deleted or not exist. "
                         "Check that ids are valid.", ids=missing)
    return failures[0]
