"""Company properties: read, create, archive, ensure_properties() and `warp-sync hubspot setup`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import REPO
from warp_sync_pipeline.core.hubspot import (
    COMPANY_PROPERTIES,
    PROPERTIES_BY_NAME,
    Conflict,
    HubSpotClient,
    NotFound,
    PropertyDefinition,
    PropertySchemaMismatch,
)

CREATE = "POST /crm/v3/properties/companies"


def test_ensure_properties_creates_ours_with_their_types_and_is_idempotent(hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    first = hubspot.ensure_properties()
    assert first.created == [p.name for p in COMPANY_PROPERTIES]
    assert first.existing == []

    ban = hubspot.get_property("warp_ban")
    assert (ban["type"], ban["fieldType"], ban["hasUniqueValue"]) == ("string", "text", True)
    services = hubspot.get_property("warp_services")
    assert (services["type"], services["fieldType"]) == ("enumeration", "checkbox")
    assert [o["value"] for o in services["options"]] == ["voice", "messaging", "data"]
    terms = hubspot.get_property("warp_payment_terms")
    assert [o["value"] for o in terms["options"]] == ["PREPAID", "NET15", "NET30", "NET45", "NET60"]
    status = hubspot.get_property("warp_status")
    assert [o["value"] for o in status["options"]] == ["PENDING", "ACTIVE", "SUSPENDED", "CLOSED"]
    for name in ("warp_credit_limit", "warp_current_balance"):
        assert hubspot.get_property(name)["type"] == "number"
    assert hubspot.get_property("warp_contact_email")["type"] == "string"

    sandbox.control.reset_counters()
    second = hubspot.ensure_properties()
    assert second.created == [] and second.existing == [p.name for p in COMPANY_PROPERTIES]
    assert sandbox.control.counters()["by_endpoint"].get(CREATE, 0) == 0  # created nothing


def test_ensure_properties_adds_missing_options_and_reports_what_it_cannot_change(hubspot: HubSpotClient) -> None:
    hubspot.create_property({**PROPERTIES_BY_NAME["warp_services"].to_api(),
                             "options": [{"label": "Voice", "value": "voice", "hidden": False}]})
    hubspot.create_property({**PROPERTIES_BY_NAME["warp_ban"].to_api(), "hasUniqueValue": False})
    with pytest.raises(PropertySchemaMismatch) as caught:
        hubspot.ensure_properties()
    assert set(caught.value.problems) == {"warp_ban"}
    assert "hasUniqueValue" in caught.value.problems["warp_ban"][0]
    services = hubspot.get_property("warp_services")
    assert [o["value"] for o in services["options"]] == ["voice", "messaging", "data"]


def test_property_read_create_archive(hubspot: HubSpotClient) -> None:
    names = {p["name"] for p in hubspot.list_properties()}
    assert {"name", "domain", "createdate", "hs_object_id"} <= names
    extra = PropertyDefinition("warp_test_flag", "Test flag", "bool", "booleancheckbox", "for a test")
    made = hubspot.create_property(extra)
    assert made["name"] == "warp_test_flag"
    with pytest.raises(Conflict):
        hubspot.create_property(extra)
    hubspot.archive_property("warp_test_flag")
    with pytest.raises(NotFound):
        hubspot.get_property("warp_test_flag")


def test_warp_sync_hubspot_setup(sandbox, database_url: str) -> None:  # noqa: ANN001
    env = {**os.environ, "HUBSPOT_BASE_URL": sandbox.base_url, "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
           "WARP_DATABASE_URL": database_url}
    command = [str(Path(os.sys.executable).parent / "warp-sync"), "hubspot", "setup"]
    first = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert "created  warp_ban" in first.stdout and "7 created, 0 already present" in first.stdout
    assert "every mapped field's property can hold its values (8 fields)" in first.stdout
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "0 created, 7 already present" in second.stdout
    assert sandbox.access_token not in first.stdout + first.stderr

    refused = subprocess.run(command, cwd=REPO, env={**env, "HUBSPOT_ACCESS_TOKEN": "pat-wrong"},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "INVALID_AUTHENTICATION" in refused.stderr
    assert "pat-wrong" not in refused.stderr
    unset = subprocess.run(command, cwd=REPO, env={k: v for k, v in env.items() if k != "HUBSPOT_ACCESS_TOKEN"},
                           capture_output=True, text=True, timeout=60)
    assert unset.returncode == 2 and "HUBSPOT_ACCESS_TOKEN" in unset.stderr


def test_setup_creates_what_the_table_maps_and_refuses_a_property_that_cannot_hold_it(
    sandbox, database_url: str, engine,  # noqa: ANN001
) -> None:
    import sqlalchemy as sa

    env = {**os.environ, "HUBSPOT_BASE_URL": sandbox.base_url, "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
           "WARP_DATABASE_URL": database_url}
    command = [str(Path(os.sys.executable).parent / "warp-sync"), "hubspot", "setup"]
    with engine.begin() as conn:  # a new column, mapped by one row; HubSpot has no property for it yet
        conn.execute(sa.text("ALTER TABLE customers ADD COLUMN segment text"))
        conn.execute(sa.text(
            "INSERT INTO hubspot_field_mappings (warp_field, hubspot_property, direction, strategy, field_type, options) "
            "VALUES ('segment', 'warp_segment', 'WARP_TO_HUBSPOT', 'WARP_WINS', 'enumeration', '[\"SMB\", \"ENTERPRISE\"]')"))
    made = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "created  warp_segment (mapped from segment)" in made.stdout
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10) as client:
        segment = client.get_property("warp_segment")
        assert (segment["type"], segment["fieldType"]) == ("enumeration", "select")
        assert [o["value"] for o in segment["options"]] == ["SMB", "ENTERPRISE"]
        # An admin's validation rule on the contact email that WARP's values would break; a property made read-only.
        sandbox.control.configure(property_validations={"warp_contact_email": [
            {"ruleType": "EMAIL_BLOCKED_DOMAINS", "ruleArguments": ["gmail.com"]}]})
    refused = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert ("error: contact_email -> warp_contact_email: HubSpot refuses emails at gmail.com, which WARP accepts"
            in refused.stderr)
