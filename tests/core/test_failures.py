"""One code per kind of failure, whichever flow records it (issue 14: the drain and the nightly named a rate limit
differently), and HubSpot's refused properties in WARP's field names."""

from __future__ import annotations

from uuid import uuid4

import pytest

from warp_sync_pipeline.core.failures import error_code, refused_fields
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import (
    AuthFailed,
    BudgetExhausted,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    ServiceUnavailable,
    UniqueValueConflict,
    ValidationFailed,
)
from warp_sync_pipeline.core.hubspot.errors import DailyShareReserved, PropertyError
from warp_sync_pipeline.core.leases import CustomerBusy
from warp_sync_pipeline.core.normalize import InvalidFieldValue

REFUSED = (PropertyError("warp_status", "Property values were not valid", "INVALID_OPTION", "GONE"),
           PropertyError("hs_unmapped", "not a number", "INVALID_INTEGER", "x"))


@pytest.mark.parametrize(("error", "code"), [
    (NotFound("gone", status=404), "COMPANY_NOT_FOUND"),
    (AuthFailed("no", status=401), "HUBSPOT_AUTH_FAILED"),
    (RateLimited("slow down", status=429, category="RATE_LIMITS"), "HUBSPOT_RATE_LIMITED"),
    (DailyShareReserved("kept for creates"), "HUBSPOT_RATE_LIMITED"),
    (BudgetExhausted("out of time"), "HUBSPOT_TIME_BUDGET_EXHAUSTED"),
    (ServiceUnavailable("down", status=503), "HUBSPOT_UNAVAILABLE"),
    (OutcomeUnknown("no answer"), "HUBSPOT_OUTCOME_UNKNOWN"),
    (UniqueValueConflict("taken", status=400), "HUBSPOT_UNIQUE_VALUE_CONFLICT"),
    (ValidationFailed("bad", status=400, property_errors=REFUSED), "HUBSPOT_REJECTED_VALUES"),
    (HubSpotError("odd", status=418), "HUBSPOT_ERROR"),
    (InvalidFieldValue("credit_limit", "INVALID_NUMBER", "not a number"), "INVALID_NUMBER"),
    (CustomerBusy(uuid4(), None, None), "CUSTOMER_BUSY"),
    (ValueError("x"), "VALUE_ERROR"),
])
def test_each_kind_of_failure_has_one_code(error: BaseException, code: str) -> None:
    assert error_code(error) == code


def test_a_refused_propertys_record_carries_hubspots_code_for_that_property() -> None:
    refused = ValidationFailed("bad", status=400, property_errors=REFUSED)
    assert error_code(refused, hubspot_property="warp_status") == "INVALID_OPTION"
    # Another property of the same company: HubSpot said nothing about it, so the batch's code.
    assert error_code(refused, hubspot_property="warp_credit_limit") == "HUBSPOT_REJECTED_VALUES"


def test_refused_properties_read_in_warps_field_names(rules: FieldRules) -> None:
    refused = ValidationFailed("bad", status=400, property_errors=[*REFUSED, PropertyError("name", "", None)])
    assert refused_fields(refused, rules) == {
        "status": "Property values were not valid",
        "hs_unmapped": "not a number",  # no rule maps it: HubSpot's name
        "company_name": "Invalid property value",  # HubSpot gave no reason
    }
