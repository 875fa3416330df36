"""Per-type normalisation of field values, both ways, scalar and vectorized.

Three forms of a value exist:

- the WARP value: what the `customers` column holds in Python (`Decimal`, `dict` for services, `str`, `None`);
- the HubSpot value: what HubSpot's wire carries, always a string (`""` and null both mean empty);
- the *comparable* form: canonical text that two values share exactly when they mean the same thing.
  `""` is empty. Amounts have two decimals (`"10000.00"`), services list the enabled ones in a fixed order
  (`"voice;data"`), emails are lower-cased, text is trimmed of control characters and surrounding space.
  `comparable()` accepts either side's value (or a comparable one: it is idempotent), so the decision
  function, the field state and the write ledger all compare the same text.

A value that cannot be taken by the other side (a sub-cent amount, an unknown option, an empty value for a
column WARP requires) raises `InvalidFieldValue` with a stable `code`; the vectorized form marks it NA.

Types are code, fields are data: each type's forms live here (`FieldType`, one comparable function a type, its
vectorized twin tied by property tests, and the SQL form `hubspot_sync_comparable_typed` in sql/021 that the
outbox trigger uses); which columns are mapped, with which type and options, is `hubspot_field_mappings`
(fields.py builds each mapped field's `FieldSpec` from its row). FIELD_SPECS are the seeded fields' specs, for
code that runs without a database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


class FieldType(StrEnum):
    BAN = "ban"
    STRING = "string"
    ENUMERATION = "enumeration"
    AMOUNT = "amount"
    SERVICES = "services"  # a set of flags: WARP's jsonb object of booleans, HubSpot's ';'-joined checkboxes
    EMAIL = "email"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"


STATUS_VALUES = ("PENDING", "ACTIVE", "SUSPENDED", "CLOSED")
PAYMENT_TERMS_VALUES = ("PREPAID", "NET15", "NET30", "NET45", "NET60")
# The order is the canonical order of the `;`-joined multi-checkbox value.
SERVICE_NAMES = ("voice", "messaging", "data")

# numeric(14, 2): twelve digits before the point.
AMOUNT_LIMIT = Decimal(10) ** 12
CENT = Decimal("0.01")


@dataclass(frozen=True)
class FieldSpec:
    """What a WARP column holds, as far as syncing it is concerned."""

    name: str
    type: FieldType
    options: tuple[str, ...] = ()
    # False where WARP's column is NOT NULL: an empty value cannot be written there.
    nullable: bool = True
    minimum: Decimal | None = None
    # Amounts: decimal places WARP keeps (numeric(p, scale)).
    scale: int = 2


FIELD_SPECS: Mapping[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("ban", FieldType.BAN, nullable=False),
        FieldSpec("company_name", FieldType.STRING, nullable=False),
        FieldSpec("status", FieldType.ENUMERATION, STATUS_VALUES, nullable=False),
        FieldSpec("credit_limit", FieldType.AMOUNT, minimum=Decimal(0)),
        FieldSpec("current_balance", FieldType.AMOUNT, nullable=False),
        # Empty services means "all off", which WARP stores as an object of three falses.
        FieldSpec("services", FieldType.SERVICES, SERVICE_NAMES),
        FieldSpec("payment_terms", FieldType.ENUMERATION, PAYMENT_TERMS_VALUES),
        FieldSpec("contact_email", FieldType.EMAIL),
    )
}


class InvalidFieldValue(ValueError):
    """A value one side holds that the other side cannot take. `code` is stable (flows log it)."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code
        self.message = message


def spec_for(field: str | FieldSpec) -> FieldSpec:
    if isinstance(field, FieldSpec):
        return field
    try:
        return FIELD_SPECS[field]
    except KeyError:
        raise KeyError(f"{field!r} is not a WARP field warp-sync knows how to sync") from None


# --- text helpers shared by the scalar and the vectorized forms ---------------------------------------------
# The vectorized form handles ASCII values with pandas string operations and hands any other value to the
# scalar form, so both agree by construction on exotic Unicode (whitespace sets and case mappings differ
# between Python and Arrow outside ASCII).

# What Python's str.strip() removes from an ASCII string.
ASCII_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
ASCII_CONTROL_PATTERN = r"[\x00-\x1f\x7f]"
AMOUNT_SYNTAX = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Digits after the second decimal must be zeros: "10.500" is 10.50, "10.505" is not an amount of cents.
AMOUNT_CENTS = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]{0,2}0*)?|\.[0-9]{1,2}0*)")
BAN_PATTERN = re.compile(r"ZT-[0-9]{9}")
# Like the customers_contact_email_format constraint, and no control characters either.
EMAIL_PATTERN = re.compile(r"[^@\s\x00-\x20\x7f]+@[^@\s\x00-\x20\x7f]+\.[^@\s\x00-\x20\x7f]+")
ASCII_EMAIL_PATTERN = r"[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+"


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float | Decimal):
        return value != value  # NaN: pandas' missing marker in float columns
    return False


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _require_text(spec: FieldSpec, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidFieldValue(spec.name, "WRONG_TYPE", f"expected text, got {type(value).__name__}")
    return value


def _empty(spec: FieldSpec) -> str:
    if not spec.nullable:
        raise InvalidFieldValue(spec.name, "VALUE_REQUIRED", "a value is required (WARP's column is NOT NULL)")
    return ""


def _clean_text(value: str) -> str:
    return CONTROL_CHARS.sub("", value).strip()


# --- scalar: comparable form ---------------------------------------------------------------------------------


def comparable(field: str | FieldSpec, value: object) -> str:
    """Canonical text of either side's value ("" = empty); raises InvalidFieldValue."""
    spec = spec_for(field)
    if _is_missing(value):
        return _empty(spec)
    return _COMPARABLE[spec.type](spec, value)


def comparable_or_none(field: str | FieldSpec, value: object) -> str | None:
    """The comparable text, or None where the value cannot be normalised (decide() treats it as invalid)."""
    try:
        return comparable(field, value)
    except InvalidFieldValue:
        return None


def _comparable_string(spec: FieldSpec, value: object) -> str:
    text = _clean_text(_require_text(spec, value))
    return text or _empty(spec)


def _comparable_ban(spec: FieldSpec, value: object) -> str:
    text = _require_text(spec, value).strip()
    if not text:
        return _empty(spec)
    if not BAN_PATTERN.fullmatch(text):
        raise InvalidFieldValue(spec.name, "INVALID_BAN", f"{_short(text)} is not ZT- and nine digits")
    return text


def _comparable_enumeration(spec: FieldSpec, value: object) -> str:
    text = _require_text(spec, value).strip()
    if not text:
        return _empty(spec)
    if text not in spec.options:
        raise InvalidFieldValue(
            spec.name, "INVALID_OPTION", f"{_short(text)} is not one of {', '.join(spec.options)}"
        )
    return text


def _comparable_email(spec: FieldSpec, value: object) -> str:
    text = _require_text(spec, value).strip()
    if not text:
        return _empty(spec)
    if not EMAIL_PATTERN.fullmatch(text):
        raise InvalidFieldValue(spec.name, "INVALID_EMAIL", f"{_short(text)} is not an email address")
    # Case-insensitive: HubSpot lower-cases some addresses, people type them in any case.
    return text.lower()


def _amount_text(spec: FieldSpec, value: object) -> str:
    if isinstance(value, bool):
        raise InvalidFieldValue(spec.name, "WRONG_TYPE", "expected an amount, got a boolean")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidFieldValue(spec.name, "INVALID_AMOUNT", f"{_short(value)} is not a finite amount")
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr is the shortest text that round-trips, the same text pandas gives a float column.
        return repr(value)
    if isinstance(value, str):
        return value
    raise InvalidFieldValue(spec.name, "WRONG_TYPE", f"expected an amount, got {type(value).__name__}")


def _places_pattern(scale: int) -> re.Pattern[str]:
    """Digits past `scale` decimals must be zeros ("10.500" is 10.50 at two places, "10.505" is not)."""
    if scale == 2:
        return AMOUNT_CENTS
    return re.compile(rf"[+-]?(?:[0-9]+(?:\.[0-9]{{0,{scale}}}0*)?|\.[0-9]{{1,{max(scale, 1)}}}0*)")


def amount_decimal(spec: FieldSpec, value: object) -> Decimal | None:
    """The amount as a Decimal with the spec's places, two by default (None when empty); raises
    InvalidFieldValue."""
    text = _amount_text(spec, value).strip()
    if not text:
        return None
    if not AMOUNT_SYNTAX.fullmatch(text):
        raise InvalidFieldValue(spec.name, "INVALID_AMOUNT", f"{_short(text)} is not a number")
    if not _places_pattern(spec.scale).fullmatch(text):
        raise InvalidFieldValue(spec.name, "AMOUNT_TOO_PRECISE",
                                f"{_short(text)} has more than {'two' if spec.scale == 2 else spec.scale} decimals")
    number = Decimal(text)
    if abs(number) >= AMOUNT_LIMIT:
        raise InvalidFieldValue(spec.name, "AMOUNT_OUT_OF_RANGE", f"{_short(text)} is out of range")
    if spec.minimum is not None and number < spec.minimum:
        raise InvalidFieldValue(spec.name, "AMOUNT_BELOW_MINIMUM", f"{_short(text)} is below {spec.minimum}")
    places = number.quantize(Decimal(1).scaleb(-spec.scale))
    return places.copy_abs() if places == 0 else places  # no "-0.00"


def _comparable_amount(spec: FieldSpec, value: object) -> str:
    number = amount_decimal(spec, value)
    return _empty(spec) if number is None else format(number, "f")


def services_enabled(spec: FieldSpec, value: object) -> tuple[str, ...]:
    """The enabled services in canonical order, from a dict, JSON text or `;`-joined text."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise InvalidFieldValue(spec.name, "INVALID_SERVICES", "is not valid JSON") from None
        else:
            tokens = {token.strip() for token in text.split(";")} - {""}
            unknown = sorted(tokens - set(spec.options))
            if unknown:
                raise InvalidFieldValue(
                    spec.name,
                    "INVALID_OPTION",
                    f"{_short(';'.join(unknown))} is not among {', '.join(spec.options)}",
                )
            return tuple(name for name in spec.options if name in tokens)
    if isinstance(value, Mapping):
        unknown = sorted(str(key) for key in value if key not in spec.options)
        if unknown:
            raise InvalidFieldValue(spec.name, "INVALID_SERVICES", f"unknown services {_short(unknown)}")
        for key, flag in value.items():
            if not isinstance(flag, bool):
                raise InvalidFieldValue(spec.name, "INVALID_SERVICES", f"{key} must be true or false")
        return tuple(name for name in spec.options if value.get(name, False))
    raise InvalidFieldValue(spec.name, "WRONG_TYPE", f"expected services, got {type(value).__name__}")


def _comparable_services(spec: FieldSpec, value: object) -> str:
    return ";".join(services_enabled(spec, value))


INTEGER_SYNTAX = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
# bigint's range: what WARP's widest integer column holds.
INTEGER_LIMIT = 2**63
BOOLEAN_WORDS = {"true": "true", "false": "false"}
DATE_SYNTAX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _comparable_integer(spec: FieldSpec, value: object) -> str:
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool | np.bool_):
        raise InvalidFieldValue(spec.name, "WRONG_TYPE", "expected a whole number, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal | float):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise InvalidFieldValue(spec.name, "INVALID_INTEGER", f"{_short(value)} is not a whole number")
        number = int(value)
    else:
        text = _require_text(spec, value).strip()
        if not text:
            return _empty(spec)
        # HubSpot's number properties may answer "42.0" for 42.
        if not INTEGER_SYNTAX.fullmatch(text):
            raise InvalidFieldValue(spec.name, "INVALID_INTEGER", f"{_short(text)} is not a whole number")
        number = int(text.split(".")[0])
    if abs(number) >= INTEGER_LIMIT:
        raise InvalidFieldValue(spec.name, "INTEGER_OUT_OF_RANGE", f"{_short(value)} is out of range")
    if spec.minimum is not None and number < spec.minimum:
        raise InvalidFieldValue(spec.name, "INTEGER_BELOW_MINIMUM", f"{number} is below {spec.minimum}")
    return str(number)


def _comparable_boolean(spec: FieldSpec, value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    text = _require_text(spec, value).strip()
    if not text:
        return _empty(spec)
    # HubSpot's booleancheckbox properties carry "true" and "false".
    word = BOOLEAN_WORDS.get(text.lower())
    if word is None:
        raise InvalidFieldValue(spec.name, "INVALID_BOOLEAN", f"{_short(text)} is not true or false")
    return word


def _comparable_date(spec: FieldSpec, value: object) -> str:
    if isinstance(value, datetime):
        raise InvalidFieldValue(spec.name, "WRONG_TYPE", "expected a date, got a date and time")
    if isinstance(value, date):
        return value.isoformat()
    text = _require_text(spec, value).strip()
    if not text:
        return _empty(spec)
    if re.fullmatch(r"[0-9]{1,15}", text):
        # HubSpot's date properties may carry midnight UTC in epoch milliseconds.
        moment = datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        if moment.time() != datetime.min.time():
            raise InvalidFieldValue(spec.name, "INVALID_DATE", f"{_short(text)} is not a midnight UTC")
        return moment.date().isoformat()
    if not DATE_SYNTAX.fullmatch(text):
        raise InvalidFieldValue(spec.name, "INVALID_DATE", f"{_short(text)} is not a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidFieldValue(spec.name, "INVALID_DATE", f"{_short(text)} is not a date") from None


_COMPARABLE = {
    FieldType.STRING: _comparable_string,
    FieldType.BAN: _comparable_ban,
    FieldType.ENUMERATION: _comparable_enumeration,
    FieldType.EMAIL: _comparable_email,
    FieldType.AMOUNT: _comparable_amount,
    FieldType.SERVICES: _comparable_services,
    FieldType.INTEGER: _comparable_integer,
    FieldType.BOOLEAN: _comparable_boolean,
    FieldType.DATE: _comparable_date,
}


# --- scalar: to HubSpot and from HubSpot ---------------------------------------------------------------------


def to_hubspot(field: str | FieldSpec, warp_value: object) -> str:
    """The string to send HubSpot for a WARP value: valid there (no surrounding space, existing options).

    "" clears the property. Emails keep the case WARP holds; everything else is its comparable form.
    """
    spec = spec_for(field)
    canonical = comparable(spec, warp_value)
    if spec.type is FieldType.EMAIL and canonical:
        return _require_text(spec, warp_value).strip()
    return canonical


def from_hubspot(field: str | FieldSpec, hubspot_value: str | None) -> object:
    """The WARP value for a HubSpot string: Decimal, dict (services), str, or None when empty."""
    spec = spec_for(field)
    if hubspot_value is not None and not isinstance(hubspot_value, str):
        raise InvalidFieldValue(spec.name, "WRONG_TYPE", "HubSpot values are strings")
    canonical = comparable(spec, hubspot_value)
    if spec.type is FieldType.SERVICES:
        enabled = set(canonical.split(";")) if canonical else set()
        return {name: name in enabled for name in spec.options}
    if canonical == "":
        return None
    if spec.type is FieldType.AMOUNT:
        return Decimal(canonical)
    if spec.type is FieldType.INTEGER:
        return int(canonical)
    if spec.type is FieldType.BOOLEAN:
        return canonical == "true"
    if spec.type is FieldType.DATE:
        return date.fromisoformat(canonical)
    if spec.type is FieldType.EMAIL:
        return hubspot_value.strip()  # type: ignore[union-attr]  # not empty, so a string
    return canonical


# --- HubSpot times -------------------------------------------------------------------------------------------


def parse_hubspot_time(value: object) -> datetime:
    """HubSpot time (epoch milliseconds as int or digits, or ISO-8601) as an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidFieldValue("time", "INVALID_TIME", "a naive datetime has no time zone")
        return value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?[0-9]+", text):
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidFieldValue("time", "INVALID_TIME", f"{_short(text)} is not a time") from None
        if parsed.tzinfo is None:
            raise InvalidFieldValue("time", "INVALID_TIME", f"{_short(text)} has no time zone")
        return parsed.astimezone(UTC)
    raise InvalidFieldValue("time", "INVALID_TIME", f"expected a time, got {type(value).__name__}")


def to_epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no time zone")
    # Integer arithmetic: float seconds would lose a millisecond now and then.
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_hubspot_iso(moment: datetime) -> str:
    """HubSpot's style: UTC, milliseconds, `Z`."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no time zone")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_hubspot_times(values: pd.Series) -> pd.Series:
    """Vectorized parse_hubspot_time: epoch-ms numbers or digit strings, or ISO-8601; NaT when missing."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return pd.to_datetime(values, unit="ms", utc=True)
    text = values.astype("str").str.strip()
    digits = text.str.fullmatch(r"-?[0-9]+").fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ms, UTC]")
    if digits.any():
        out[digits] = pd.to_datetime(text[digits].astype("int64"), unit="ms", utc=True)
    iso = ~digits & text.notna() & (text != "")
    if iso.any():
        out[iso] = pd.to_datetime(text[iso], utc=True, format="ISO8601")
    return out


# --- vectorized: comparable form -----------------------------------------------------------------------------


def comparable_series(field: str | FieldSpec, values: pd.Series) -> pd.Series:
    """`comparable()` over a column: a `str` Series, "" for empty, NA where the value is invalid.

    Fast paths: text columns (`str` dtype, or object holding only strings and nulls: HubSpot's wire, or WARP
    values selected as text, e.g. `credit_limit::text`, `services::text`), and numeric columns for amounts.
    Any other column (Decimal objects, dicts) is normalised element by element, with the same result.
    """
    spec = spec_for(field)
    if pd.api.types.is_bool_dtype(values.dtype):
        return _per_element(spec, values)
    if spec.type is FieldType.AMOUNT and spec.scale != 2:
        return _per_element(spec, values)  # the fast path below counts cents
    if spec.type is FieldType.AMOUNT and pd.api.types.is_numeric_dtype(values.dtype):
        # Same text a scalar float/int gets (repr); NaN stays missing.
        return _amount_vector(spec, values.astype("str"))
    if not _is_text_column(values):
        return _per_element(spec, values)
    text = values if isinstance(values.dtype, pd.StringDtype) else values.astype("str")
    return _VECTOR[spec.type](spec, text)


def _is_text_column(values: pd.Series) -> bool:
    if isinstance(values.dtype, pd.StringDtype):
        return True
    if values.dtype != object:
        return False
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _per_element(spec: FieldSpec, values: pd.Series) -> pd.Series:
    out = np.empty(len(values), dtype=object)
    for position, value in enumerate(values.to_numpy(dtype=object)):
        try:
            out[position] = comparable(spec, value)
        except InvalidFieldValue:
            out[position] = None
    return pd.Series(out, index=values.index, dtype="str")


def _per_unique(spec: FieldSpec, text: pd.Series) -> pd.Series:
    """For small value sets (enumerations, services): normalise each distinct value once."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    mapped = _per_element(spec, pd.Series(np.asarray(uniques, dtype=object))).to_numpy(dtype=object)
    try:
        missing = comparable(spec, None)
    except InvalidFieldValue:
        missing = None
    table = np.append(mapped, np.array([missing], dtype=object))  # code -1 takes the last slot
    return pd.Series(table[codes], index=text.index, dtype="str")


def _merge_non_ascii(spec: FieldSpec, text: pd.Series, fast: pd.Series, ascii_rows: np.ndarray) -> pd.Series:
    """Non-ASCII values go through the scalar form (see the note on text helpers)."""
    if ascii_rows.all():
        return fast
    out = fast.to_numpy(dtype=object, copy=True)
    others = ~ascii_rows
    out[others] = _per_element(spec, text[others]).to_numpy(dtype=object)
    return pd.Series(out, index=text.index, dtype="str")


def _ascii_rows(text: pd.Series) -> np.ndarray:
    # Missing values count as ASCII: the fast paths turn them into "".
    return text.str.isascii().fillna(True).to_numpy(dtype=bool)


def _finish(spec: FieldSpec, cleaned: pd.Series, valid: pd.Series | np.ndarray) -> pd.Series:
    """cleaned: the normalised text ("" for empty); valid: where a non-empty value passed its check."""
    empty = (cleaned == "").to_numpy(dtype=bool)
    ok = np.where(empty, spec.nullable, np.asarray(valid, dtype=bool))
    return cleaned.where(ok)


def _string_vector(spec: FieldSpec, text: pd.Series) -> pd.Series:
    ascii_rows = _ascii_rows(text)
    cleaned = text.fillna("")
    if cleaned.str.contains(ASCII_CONTROL_PATTERN, regex=True).any():
        cleaned = cleaned.str.replace(ASCII_CONTROL_PATTERN, "", regex=True)
    cleaned = cleaned.str.strip(" ")  # after the controls are gone, a space is the only ASCII blank left
    fast = _finish(spec, cleaned, np.ones(len(text), dtype=bool))
    return _merge_non_ascii(spec, text, fast, ascii_rows)


def _ban_vector(spec: FieldSpec, text: pd.Series) -> pd.Series:
    ascii_rows = _ascii_rows(text)
    cleaned = text.fillna("").str.strip(ASCII_WHITESPACE)
    fast = _finish(spec, cleaned, cleaned.str.fullmatch(BAN_PATTERN.pattern))
    return _merge_non_ascii(spec, text, fast, ascii_rows)


def _email_vector(spec: FieldSpec, text: pd.Series) -> pd.Series:
    ascii_rows = _ascii_rows(text)
    cleaned = text.fillna("").str.strip(ASCII_WHITESPACE)
    fast = _finish(spec, cleaned.str.lower(), cleaned.str.fullmatch(ASCII_EMAIL_PATTERN))
    return _merge_non_ascii(spec, text, fast, ascii_rows)


def _amount_vector(spec: FieldSpec, text: pd.Series) -> pd.Series:
    ascii_rows = _ascii_rows(text)
    cleaned = text.fillna("").str.strip(ASCII_WHITESPACE)
    nonempty = (cleaned != "").to_numpy(dtype=bool)
    valid = cleaned.str.fullmatch(AMOUNT_CENTS.pattern).to_numpy(dtype=bool, copy=True)
    # Arrow's casts and string kernels: pandas' to_numeric and string concatenation are several times slower.
    parsed = pc.cast(pa.array(cleaned.where(valid)), pa.float64())
    number = parsed.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        valid &= np.abs(number) < float(AMOUNT_LIMIT)
        if spec.minimum is not None:
            valid &= number >= float(spec.minimum)
    # Exact: twelve digits and two decimals fit a double with room to spare, and rint recovers the cents.
    cents = np.rint(np.where(valid, number, 0.0) * 100).astype(np.int64)
    magnitude = np.abs(cents)
    whole = pc.cast(pa.array(magnitude // 100), pa.string())
    fraction = pc.utf8_lpad(pc.cast(pa.array(magnitude % 100), pa.string()), width=2, padding="0")
    sign = pc.if_else(pa.array(cents < 0), "-", "")
    joined = pc.binary_join_element_wise(sign, whole, ".", fraction, "")
    formatted = pd.Series(joined, index=text.index, dtype="str").where(nonempty, "")
    fast = _finish(spec, formatted, valid)
    return _merge_non_ascii(spec, text, fast, ascii_rows)


_VECTOR = {
    FieldType.STRING: _string_vector,
    FieldType.BAN: _ban_vector,
    FieldType.EMAIL: _email_vector,
    FieldType.AMOUNT: _amount_vector,
    FieldType.ENUMERATION: _per_unique,
    FieldType.SERVICES: _per_unique,
    # Few distinct values, or types a data team maps now and then: each distinct value through the scalar form.
    FieldType.INTEGER: _per_unique,
    FieldType.BOOLEAN: _per_unique,
    FieldType.DATE: _per_unique,
}
