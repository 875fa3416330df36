"""CRM search: HubSpot's request limits, filter operators, sorts and offset paging."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
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
    typer = _Typer(definitions)
    groups = [[_compile(f, definitions, typer) for f in group] for group in request.groups]
    words = [w for w in TOKEN_SPLIT.split((request.query or "").lower().replace("*", "")) if w]
    if words:
        companies = [c for c in companies if _query_matches(c.values, words)]
    if len(groups) == 1 and len(groups[0]) == 1:  # the common case, kept tight: no generator per company
        test = groups[0][0]
        matches = [c for c in companies if test(c.values)]
    elif groups:
        matches = [c for c in companies if any(all(t(c.values) for t in group) for group in groups)]
    else:
        matches = list(companies)
    matches.sort(key=lambda c: c.id)
    for name, descending in reversed(request.sorts):
        present = [c for c in matches if c.values.get(name, "") != ""]
        absent = [c for c in matches if c.values.get(name, "") == ""]
        sort_key = typer.key_for(name)
        present.sort(key=lambda c, n=name, k=sort_key: k(c.values[n]), reverse=descending)
        matches = present + absent  # unset values last in either direction
    end = min(request.offset + request.limit, MAX_RESULTS)
    return matches[request.offset:end], len(matches)


def _query_matches(values: dict[str, str], words: list[str]) -> bool:
    tokens = set()
    for name in QUERY_PROPERTIES:
        tokens.update(t for t in TOKEN_SPLIT.split(values.get(name, "").lower()) if t)
    return all(any(t.startswith(w) for t in tokens) for w in words)


class _Typer:
    """Comparable keys for a property's values: numbers and times numerically, text caseless.

    One key function per property, chosen once per search (a search may scan 100k companies).
    """

    def __init__(self, definitions: dict[str, PropertyDefinition]) -> None:
        self.definitions = definitions
        self._keys: dict[str, Callable[[Any], Any]] = {}

    def key(self, name: str, value: Any) -> Any:
        return self.key_for(name)(value)

    def key_for(self, name: str) -> Callable[[Any], Any]:
        if name not in self._keys:
            kind = self.definitions[name].type
            if kind == "number":
                self._keys[name] = _numeric_key(Decimal)
            elif kind in ("datetime", "date"):
                self._keys[name] = _numeric_key(lambda text: Decimal(parse_time_ms(text)))
            else:
                self._keys[name] = lambda value: _text(value).casefold()
        return self._keys[name]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return str(value).lower() if isinstance(value, bool) else str(value)


def _numeric_key(convert: Callable[[str], Decimal]) -> Callable[[Any], tuple[int, Decimal, str]]:
    def key(value: Any) -> tuple[int, Decimal, str]:
        text = _text(value)
        try:
            return (0, convert(text), "")
        except (InvalidOperation, ValueError, OverflowError):
            return (1, Decimal(0), text.casefold())  # a value HubSpot would not hold (seeded): sorts after

    return key


Predicate = Callable[[dict[str, str]], bool]


def _compile(f: Filter, definitions: dict[str, PropertyDefinition], typer: _Typer) -> Predicate:
    """One filter as a test of a company's values, its operands converted once."""
    name, op = f.property_name, f.operator
    if op == "HAS_PROPERTY":
        return lambda values: values.get(name, "") != ""
    if op == "NOT_HAS_PROPERTY":
        return lambda values: values.get(name, "") == ""
    if op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN"):
        positive = {"NEQ": "EQ", "NOT_IN": "IN", "NOT_CONTAINS_TOKEN": "CONTAINS_TOKEN"}[op]
        test = _compile(Filter(name, positive, f.value, f.high_value, f.values), definitions, typer)
        return lambda values: not test(values)
    if op == "CONTAINS_TOKEN":
        pattern = str(f.value)
        return lambda values: values.get(name, "") != "" and _contains_token(values[name], pattern)
    key = typer.key_for(name)
    if op in ("EQ", "IN"):
        wanted = {key(w) for w in ([f.value] if op == "EQ" else list(f.values))}
        if definitions[name].multi_select:
            return lambda values: bool(values.get(name)) and any(key(p) in wanted for p in values[name].split(";"))
        return lambda values: bool(values.get(name)) and key(values[name]) in wanted
    if op == "BETWEEN":
        low, high = key(f.value), key(f.high_value)
        return lambda values: bool(values.get(name)) and low <= key(values[name]) <= high
    other = key(f.value)
    compare: Callable[[Any], bool] = {
        "LT": lambda k: k < other, "LTE": lambda k: k <= other,
        "GT": lambda k: k > other, "GTE": lambda k: k >= other,
    }[op]
    return lambda values: bool(values.get(name)) and compare(key(values[name]))


def _contains_token(stored: str, pattern: str) -> bool:
    """Word match (case-insensitive); `*` is a wildcard; a pattern of several words matches them in order."""
    tokens = [t for t in TOKEN_SPLIT.split(stored.lower()) if t]
    wanted = [t for t in TOKEN_SPLIT.split(pattern.lower()) if t]
    if not wanted:
        return False
    if len(wanted) == 1:
        return any(fnmatch.fnmatchcase(t, wanted[0]) for t in tokens)
    return f" {' '.join(wanted)} " in f" {' '.join(tokens)} "
