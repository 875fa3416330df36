"""CRM search: HubSpot's request limits, filter operators, sorts and offset paging."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from hubspot_sandbox.portal import Company
from hubspot_sandbox.properties import PropertyDefinition
from hubspot_sandbox.wire import bad_request, parse_time_ms

MAX_LIMIT = 200
MAX_RESULTS = 10_000
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_QUERY_LENGTH = 3000
DEFAULT_LIMIT = 10
# HubSpot's default searchable company properties for the free-text `query`.
QUERY_PROPERTIES = ("name", "domain", "website", "phone")
OPERATORS = frozenset({
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
})
TOKEN_SPLIT = re.compile(r"[^0-9a-z*]+")


@dataclass(frozen=True)
class Filter:
    property_name: str
    operator: str
    value: Any = None
    high_value: Any = None
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchRequest:
    groups: list[list[Filter]]
    sorts: list[tuple[str, bool]]  # (property, descending)
    properties: list[str]
    limit: int
    offset: int
    query: str | None


def parse_request(body: Any, definitions: dict[str, PropertyDefinition]) -> SearchRequest:
    if not isinstance(body, dict):
        raise bad_request("The search request must be a JSON object.")
    limit = _int_field(body, "limit", DEFAULT_LIMIT)
    if limit < 0 or limit > MAX_LIMIT:
        raise bad_request(f"limit must be between 0 and {MAX_LIMIT}; got {limit}.")
    offset = _int_field(body, "after", 0)
    if offset < 0:
        raise bad_request(f"after must be a non-negative offset; got {offset}.")
    if offset >= MAX_RESULTS:
        raise bad_request(f"Search results are limited to {MAX_RESULTS} per query; after={offset} pages beyond "
                          "them. Narrow the filters (for example by hs_object_id or hs_lastmodifieddate).")
    query = body.get("query")
    if query is not None and (not isinstance(query, str) or len(query) > MAX_QUERY_LENGTH):
        raise bad_request(f"query must be a string of at most {MAX_QUERY_LENGTH} characters.")
    groups = _parse_groups(body, definitions)
    properties = body.get("properties") or []
    if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
        raise bad_request("properties must be a list of property names.")
    return SearchRequest(groups, _parse_sorts(body.get("sorts") or [], definitions), properties, limit, offset,
                         query or None)


def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    raw = body.get(key)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise bad_request(f"{key} must be a whole number.")
    try:
        return int(str(raw))
    except ValueError:
        raise bad_request(f"{key} must be a whole number; got {raw!r}.") from None


def _parse_groups(body: dict[str, Any], definitions: dict[str, PropertyDefinition]) -> list[list[Filter]]:
    raw_groups = body.get("filterGroups") or []
    if not isinstance(raw_groups, list):
        raise bad_request("filterGroups must be a list.")
    if len(raw_groups) > MAX_GROUPS:
        raise bad_request(f"Too many filter groups: {len(raw_groups)}. A search allows at most {MAX_GROUPS}.")
    groups: list[list[Filter]] = []
    total = 0
    for raw_group in raw_groups:
        raw_filters = raw_group.get("filters", []) if isinstance(raw_group, dict) else None
        if not isinstance(raw_filters, list):
            raise bad_request("Each filter group must be an object with a list of filters.")
        if len(raw_filters) > MAX_FILTERS_PER_GROUP:
            raise bad_request(f"Too many filters in one group: {len(raw_filters)}. A group allows at most "
                              f"{MAX_FILTERS_PER_GROUP}.")
        total += len(raw_filters)
        groups.append([_parse_filter(f, definitions) for f in raw_filters])
    if total > MAX_FILTERS:
        raise bad_request(f"Too many filters: {total}. A search allows at most {MAX_FILTERS} across all groups.")
    return groups


def _parse_filter(raw: Any, definitions: dict[str, PropertyDefinition]) -> Filter:
    if not isinstance(raw, dict):
        raise bad_request("Each filter must be an object.")
    name, operator = raw.get("propertyName"), str(raw.get("operator") or "EQ").upper()
    if not isinstance(name, str) or not name:
        raise bad_request("Each filter needs a propertyName.")
    if name not in definitions:
        raise bad_request(f'Property "{name}" does not exist and cannot be used in a filter.', propertyName=[name])
    if operator not in OPERATORS:
        raise bad_request(f"Unknown filter operator {operator}; use one of {', '.join(sorted(OPERATORS))}.")
    values = raw.get("values") or []
    if operator in ("IN", "NOT_IN") and (not isinstance(values, list) or not values):
        raise bad_request(f"Operator {operator} needs a non-empty values list.")
    if operator == "BETWEEN" and (raw.get("value") is None or raw.get("highValue") is None):
        raise bad_request("Operator BETWEEN needs value and highValue.")
    if operator not in ("IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY") and raw.get("value") is None:
        raise bad_request(f"Operator {operator} needs a value.")
    return Filter(name, operator, raw.get("value"), raw.get("highValue"), tuple(values))


def _parse_sorts(raw_sorts: Any, definitions: dict[str, PropertyDefinition]) -> list[tuple[str, bool]]:
    # The spec types sorts as strings ("-createdate"); most callers send objects. Accept both.
    if not isinstance(raw_sorts, list):
        raise bad_request("sorts must be a list.")
    sorts: list[tuple[str, bool]] = []
    for raw in raw_sorts:
        if isinstance(raw, str):
            descending = raw.startswith("-")
            name = raw.lstrip("-+")
        elif isinstance(raw, dict) and isinstance(raw.get("propertyName"), str):
            name = raw["propertyName"]
            direction = str(raw.get("direction") or "ASCENDING").upper()
            if direction not in ("ASCENDING", "DESCENDING"):
                raise bad_request(f"Sort direction must be ASCENDING or DESCENDING; got {direction}.")
            descending = direction == "DESCENDING"
        else:
            raise bad_request("Each sort must be a property name or an object with propertyName and direction.")
        if name not in definitions:
            raise bad_request(f'Property "{name}" does not exist and cannot be used to sort.', propertyName=[name])
        sorts.append((name, descending))
    return sorts


def run(request: SearchRequest, companies: list[Company],
        definitions: dict[str, PropertyDefinition]) -> tuple[list[Company], int]:
    """The page of matching companies and the total number of matches."""
    matcher = _Matcher(definitions)
    matches = [c for c in companies if matcher.matches(c, request)]
    matches.sort(key=lambda c: c.id)
    for name, descending in reversed(request.sorts):
        present = [c for c in matches if c.values.get(name, "") != ""]
        absent = [c for c in matches if c.values.get(name, "") == ""]
        present.sort(key=lambda c, n=name: matcher.sort_key(n, c.values[n]), reverse=descending)
        matches = present + absent  # unset values last in either direction
    end = min(request.offset + request.limit, MAX_RESULTS)
    return matches[request.offset:end], len(matches)


class _Matcher:
    def __init__(self, definitions: dict[str, PropertyDefinition]) -> None:
        self.definitions = definitions

    def matches(self, company: Company, request: SearchRequest) -> bool:
        if request.query and not self._query_matches(company, request.query):
            return False
        if not request.groups:
            return True
        return any(all(self._filter_matches(company, f) for f in group) for group in request.groups)

    def _query_matches(self, company: Company, query: str) -> bool:
        tokens = set()
        for name in QUERY_PROPERTIES:
            tokens.update(t for t in TOKEN_SPLIT.split(company.values.get(name, "").lower()) if t)
        words = [w for w in TOKEN_SPLIT.split(query.lower().replace("*", "")) if w]
        return all(any(t.startswith(w) for t in tokens) for w in words)

    def sort_key(self, name: str, value: str) -> Any:
        kind = self.definitions[name].type
        try:
            if kind == "number":
                return (0, Decimal(value), "")
            if kind in ("datetime", "date"):
                return (0, Decimal(parse_time_ms(value)), "")
        except (InvalidOperation, ValueError):
            pass
        return (1, Decimal(0), value.casefold())

    def _typed(self, name: str, raw: Any) -> Any:
        return self.sort_key(name, str(raw).lower() if isinstance(raw, bool) else str(raw))

    def _filter_matches(self, company: Company, f: Filter) -> bool:
        stored = company.values.get(f.property_name, "")
        op = f.operator
        if op == "HAS_PROPERTY":
            return stored != ""
        if op == "NOT_HAS_PROPERTY":
            return stored == ""
        if op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN"):
            positive = {"NEQ": "EQ", "NOT_IN": "IN", "NOT_CONTAINS_TOKEN": "CONTAINS_TOKEN"}[op]
            return not self._filter_matches(company, Filter(f.property_name, positive, f.value, f.high_value,
                                                            f.values))
        if stored == "":
            return False
        definition = self.definitions[f.property_name]
        if op in ("EQ", "IN"):
            wanted = [f.value] if op == "EQ" else list(f.values)
            options = stored.split(";") if definition.multi_select else [stored]
            stored_keys = {self._typed(f.property_name, o) for o in options}
            return any(self._typed(f.property_name, w) in stored_keys for w in wanted)
        if op == "CONTAINS_TOKEN":
            return _contains_token(stored, str(f.value))
        key = self._typed(f.property_name, stored)
        if op == "BETWEEN":
            return self._typed(f.property_name, f.value) <= key <= self._typed(f.property_name, f.high_value)
        other = self._typed(f.property_name, f.value)
        return {"LT": key < other, "LTE": key <= other, "GT": key > other, "GTE": key >= other}[op]


def _contains_token(stored: str, pattern: str) -> bool:
    """Word match (case-insensitive); `*` is a wildcard; a pattern of several words matches them in order."""
    tokens = [t for t in TOKEN_SPLIT.split(stored.lower()) if t]
    wanted = [t for t in TOKEN_SPLIT.split(pattern.lower()) if t]
    if not wanted:
        return False
    if len(wanted) == 1:
        return any(fnmatch.fnmatchcase(t, wanted[0]) for t in tokens)
    return f" {' '.join(wanted)} " in f" {' '.join(tokens)} "
