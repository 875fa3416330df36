"""Normalisation: comparable forms, both directions, round trips, and the vectorized form agreeing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warp_sync_pipeline.core.normalize import (
    FIELD_SPECS,
    FieldSpec,
    FieldType,
    InvalidFieldValue,
    comparable,
    comparable_series,
    from_hubspot,
    parse_hubspot_time,
    parse_hubspot_times,
    to_epoch_ms,
    to_hubspot,
    to_hubspot_iso,
)

SERVICES_ALL_OFF = {"voice": False, "messaging": False, "data": False}


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        ("credit_limit", "10000", Decimal("10000.00")),
        ("credit_limit", "10000.5", Decimal("10000.50")),
        ("credit_limit", " 250.00 ", 250),
        ("credit_limit", "", None),
        ("current_balance", "-0", Decimal("0.00")),
        ("current_balance", "-12.5", Decimal("-12.50")),
        ("current_balance", "100", Decimal("1E+2")),
        ("services", "data;voice", {"voice": True, "messaging": False, "data": True}),
        ("services", "voice; data;", '{"data": true, "voice": true, "messaging": false}'),
        ("services", "", SERVICES_ALL_OFF),
        ("services", None, SERVICES_ALL_OFF),
        ("contact_email", " Ops@Acme.COM ", "ops@acme.com"),
        ("contact_email", "", None),
        ("company_name", " Acme Telecom\x07 ", "Acme Telecom"),
        ("status", " ACTIVE", "ACTIVE"),
        ("payment_terms", "", None),
        ("ban", "ZT-123456789 ", "ZT-123456789"),
    ],
)
def test_values_that_mean_the_same_compare_equal(field: str, first: object, second: object) -> None:
    assert comparable(field, first) == comparable(field, second)


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        ("credit_limit", "10000", "10000.01"),
        ("credit_limit", "", "0"),
        ("services", "voice", "voice;data"),
        ("company_name", "Acme", "acme"),
        ("status", "ACTIVE", "SUSPENDED"),
        ("contact_email", "ops@acme.com", "sales@acme.com"),
    ],
)
def test_values_that_differ_compare_unequal(field: str, first: object, second: object) -> None:
    assert comparable(field, first) != comparable(field, second)


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("credit_limit", "12.345", "AMOUNT_TOO_PRECISE"),
        ("credit_limit", "abc", "INVALID_AMOUNT"),
        ("credit_limit", "1e3", "INVALID_AMOUNT"),
        ("credit_limit", "-5", "AMOUNT_BELOW_MINIMUM"),
        ("credit_limit", "1000000000000", "AMOUNT_OUT_OF_RANGE"),
        ("credit_limit", True, "WRONG_TYPE"),
        ("credit_limit", Decimal("Infinity"), "INVALID_AMOUNT"),
        ("current_balance", "", "VALUE_REQUIRED"),
        ("company_name", "  ", "VALUE_REQUIRED"),
        ("company_name", 7, "WRONG_TYPE"),
        ("status", "active", "INVALID_OPTION"),
        ("status", None, "VALUE_REQUIRED"),
        ("payment_terms", "NET90", "INVALID_OPTION"),
        ("services", "voice;fax", "INVALID_OPTION"),
        ("services", {"voice": "yes"}, "INVALID_SERVICES"),
        ("services", {"fax": True}, "INVALID_SERVICES"),
        ("contact_email", "ops at acme", "INVALID_EMAIL"),
        ("ban", "ZT-12345", "INVALID_BAN"),
        ("ban", "", "VALUE_REQUIRED"),
    ],
)
def test_invalid_values_raise_a_stable_code(field: str, value: object, code: str) -> None:
    with pytest.raises(InvalidFieldValue) as caught:
        comparable(field, value)
    assert caught.value.code == code
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("field", "warp_value", "wire"),
    [
        ("credit_limit", Decimal("10000.00"), "10000.00"),
        ("credit_limit", None, ""),
        ("current_balance", Decimal("-12.50"), "-12.50"),
        ("services", {"voice": True, "messaging": False, "data": True}, "voice;data"),
        ("services", {"voice": False, "messaging": True, "data": True}, "messaging;data"),
        ("services", SERVICES_ALL_OFF, ""),
        ("contact_email", " Ops@Acme.com ", "Ops@Acme.com"),
        ("contact_email", None, ""),
        ("company_name", "Acme Telecom", "Acme Telecom"),
        ("status", "SUSPENDED", "SUSPENDED"),
        ("payment_terms", "NET30", "NET30"),
        ("payment_terms", None, ""),
        ("ban", "ZT-123456789", "ZT-123456789"),
    ],
)
def test_warp_values_round_trip_through_hubspot(field: str, warp_value: object, wire: str) -> None:
    assert to_hubspot(field, warp_value) == wire
    back = from_hubspot(field, wire)
    if field == "contact_email" and warp_value is not None:
        assert back == warp_value.strip()  # type: ignore[union-attr]
    else:
        assert back == warp_value


@pytest.mark.parametrize(
    ("field", "wire", "warp_value"),
    [
        ("credit_limit", "10000", Decimal("10000.00")),
        ("credit_limit", None, None),
        ("services", "data;voice", {"voice": True, "messaging": False, "data": True}),
        ("services", None, SERVICES_ALL_OFF),
        ("contact_email", "OPS@acme.com", "OPS@acme.com"),
        ("payment_terms", "NET45", "NET45"),
        ("company_name", "Acme\x00 Telecom ", "Acme Telecom"),
    ],
)
def test_hubspot_values_become_warp_values(field: str, wire: str | None, warp_value: object) -> None:
    assert from_hubspot(field, wire) == warp_value


def test_what_goes_to_hubspot_passes_its_validation() -> None:
    # No surrounding whitespace (HubSpot refuses it for non-string properties), options that exist.
    assert to_hubspot("credit_limit", " 12.5 ") == "12.50"
    assert to_hubspot("status", " ACTIVE ") == "ACTIVE"
    with pytest.raises(InvalidFieldValue):
        to_hubspot("status", "DORMANT")
    with pytest.raises(InvalidFieldValue):
        from_hubspot("company_name", "")  # WARP's company_name is NOT NULL


def test_times_both_ways() -> None:
    moment = datetime(2024, 3, 1, 9, 5, 0, 123000, tzinfo=UTC)
    assert to_epoch_ms(moment) == 1709283900123
    assert parse_hubspot_time(1709283900123) == moment
    assert parse_hubspot_time("1709283900123") == moment
    assert to_hubspot_iso(moment) == "2024-03-01T09:05:00.123Z"
    assert parse_hubspot_time("2024-03-01T09:05:00.123Z") == moment
    assert parse_hubspot_time("2024-03-01T10:05:00.123+01:00") == moment
    with pytest.raises(InvalidFieldValue):
        parse_hubspot_time("2024-03-01T09:05:00")  # no zone: ambiguous
    parsed = parse_hubspot_times(pd.Series(["1709283900123", "2024-03-01T09:05:00.123Z", None, ""]))
    assert list(parsed[:2]) == [moment, moment]
    assert parsed[2:].isna().all()
    assert list(parse_hubspot_times(pd.Series([1709283900123]))) == [moment]


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_epoch_ms_round_trip(moment: datetime) -> None:
    truncated = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert parse_hubspot_time(to_epoch_ms(moment)) == truncated
    assert parse_hubspot_time(to_hubspot_iso(moment)) == truncated


# --- the vectorized form agrees with the scalar form ------------------------------------------------------

EDGE_CHARS = st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1f", "\x00", "\x07", "\x7f", "\x85",
                              "\xa0", "\u2003", "\u3000", "\u200b"])
TRICKY_TEXT = st.sampled_from(
    [";", "@", ".", "-", "+", "0", "9", "٣", "É", "é", "İ", "ß", "a", "Z", "e", "E", "ZT-", "voice", "data",
     "messaging"]
)
CORES = st.sampled_from(
    ["", "10000", "10000.00", "-12.5", "0.005", ".5", "5.", "+7", "1e3", "999999999999.99", "1000000000000",
     "ACTIVE", "NET30", "NET90", "voice;data", "data; voice;", "fax", '{"voice": true, "data": false}',
     "ops@acme.com", "Ops@Acme.COM", "a@b", "é@exämple.com", "İNFO@ACME.COM", "ZT-123456789", "ZT-12345678",
     "Acme Telecom", "Société Générale", "Acme\x00Corp"]
)
TEXTS = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.lists(st.one_of(TRICKY_TEXT, EDGE_CHARS), max_size=6).map("".join),
    st.tuples(st.lists(EDGE_CHARS, max_size=2), CORES, st.lists(EDGE_CHARS, max_size=2)).map(
        lambda parts: "".join(parts[0]) + parts[1] + "".join(parts[2])
    ),
)


def _scalar(field: str, value: object) -> str | None:
    try:
        return comparable(field, value)
    except InvalidFieldValue:
        return None


def _as_list(series: pd.Series) -> list[str | None]:
    return [None if pd.isna(value) else value for value in series.tolist()]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(FIELD_SPECS)), values=st.lists(TEXTS, min_size=1, max_size=25))
def test_comparable_series_matches_comparable_on_text(field: str, values: list[str | None]) -> None:
    expected = [_scalar(field, value) for value in values]
    assert _as_list(comparable_series(field, pd.Series(values, dtype="str"))) == expected
    assert _as_list(comparable_series(field, pd.Series(values, dtype=object))) == expected


AMOUNTS = st.one_of(
    st.none(),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=-10**13, max_value=10**13),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-10, max_value=10),
    st.integers(min_value=-10**13, max_value=10**13),
)


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["credit_limit", "current_balance"]), values=st.lists(AMOUNTS, max_size=20))
def test_comparable_series_matches_comparable_on_amount_objects_and_numbers(
    field: str, values: list[object]
) -> None:
    expected = [_scalar(field, value) for value in values]
    assert _as_list(comparable_series(field, pd.Series(values, dtype=object))) == expected
    as_text = [None if value is None else format(value, "f") if isinstance(value, Decimal) else str(value)
               for value in values]
    assert _as_list(comparable_series(field, pd.Series(as_text, dtype="str"))) == expected


@settings(max_examples=100, deadline=None)
@given(
    field=st.sampled_from(["credit_limit", "current_balance"]),
    values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.07, 12.5, -0.0])),
                    max_size=20),
)
def test_comparable_series_matches_comparable_on_floats(field: str, values: list[float]) -> None:
    expected = [_scalar(field, value) for value in values]
    assert _as_list(comparable_series(field, pd.Series(values, dtype="float64"))) == expected


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(sorted(FIELD_SPECS)), value=TEXTS)
def test_comparable_is_idempotent(field: str, value: str | None) -> None:
    once = _scalar(field, value)
    if once is not None:
        assert comparable(field, once) == once


def test_services_column_of_dicts_is_normalised() -> None:
    values = pd.Series([{"voice": True, "messaging": False, "data": True}, SERVICES_ALL_OFF, {"fax": True}, None])
    assert _as_list(comparable_series("services", values)) == ["voice;data", "", None, ""]


CORE_VALUES = ["", "10000", "-12.5", "ACTIVE", "NET30", "voice;data", "Ops@Acme.COM", "ZT-123456789",
               "Acme Telecom"]


@pytest.mark.parametrize("field", sorted(FIELD_SPECS))
def test_every_ascii_edge_character_is_handled_alike(field: str) -> None:
    # Exhaustive where random search is thin: each ASCII character before and after each core value.
    values = [
        f"{chr(code)}{core}" if before else f"{core}{chr(code)}"
        for code in range(128)
        for core in CORE_VALUES
        for before in (True, False)
    ]
    expected = [_scalar(field, value) for value in values]
    assert _as_list(comparable_series(field, pd.Series(values, dtype="str"))) == expected


# --- the types a mapping row may declare for a new column (issue 18, item 2) -----------------------------------

TYPED_SPECS = {
    "employees": FieldSpec("employees", FieldType.INTEGER, minimum=Decimal(0)),
    "is_reseller": FieldSpec("is_reseller", FieldType.BOOLEAN),
    "contract_start": FieldSpec("contract_start", FieldType.DATE),
    "unit_price": FieldSpec("unit_price", FieldType.AMOUNT, scale=4),
    "segment": FieldSpec("segment", FieldType.ENUMERATION, ("SMB", "ENTERPRISE"), nullable=False),
}
TYPED_TEXTS = st.one_of(TEXTS, st.sampled_from(
    ["42", "42.0", "-3", "007", "1e3", "9223372036854775808", "true", "FALSE", " True ", "yes", "2026-02-29",
     "2024-02-29", "1767225600000", "1767225600001", "2026-1-2", "12.3456", "12.34567", "0.0000", "SMB", "smb"]))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(TYPED_SPECS)), values=st.lists(TYPED_TEXTS, min_size=1, max_size=25))
def test_declared_types_vectorize_like_their_scalar_form(name: str, values: list[str | None]) -> None:
    spec = TYPED_SPECS[name]
    expected = [_scalar(spec, value) for value in values]  # type: ignore[arg-type]
    assert _as_list(comparable_series(spec, pd.Series(values, dtype="str"))) == expected
    for value in expected:  # idempotent, and what HubSpot is sent reads back the same
        if value:
            assert comparable(spec, value) == value
            assert comparable(spec, from_hubspot(spec, to_hubspot(spec, value))) == value


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("employees", "42.0", "42"), ("employees", 7, "7"), ("is_reseller", " True ", "true"),
    ("is_reseller", False, "false"), ("contract_start", "1767225600000", "2026-01-01"),
    ("contract_start", date(2026, 1, 2), "2026-01-02"), ("unit_price", "12.34500", "12.3450"),
])
def test_declared_types_compare_in_one_canonical_text(name: str, value: object, expected: str) -> None:
    assert comparable(TYPED_SPECS[name], value) == expected


@pytest.mark.parametrize(("name", "value", "code"), [
    ("employees", "-1", "INTEGER_BELOW_MINIMUM"), ("employees", "4.5", "INVALID_INTEGER"),
    ("employees", True, "WRONG_TYPE"), ("is_reseller", "yes", "INVALID_BOOLEAN"),
    ("contract_start", "2026-02-29", "INVALID_DATE"), ("contract_start", "1767225600001", "INVALID_DATE"),
    ("unit_price", "1.23456", "AMOUNT_TOO_PRECISE"), ("segment", "", "VALUE_REQUIRED"),
])
def test_declared_types_refuse_what_the_other_side_cannot_hold(name: str, value: object, code: str) -> None:
    with pytest.raises(InvalidFieldValue) as refused:
        comparable(TYPED_SPECS[name], value)
    assert refused.value.code == code
