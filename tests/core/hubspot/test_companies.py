"""Every companies endpoint of the client against the sandbox."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.core.hubspot.conftest import company_values
from warp_sync_pipeline.core.hubspot import (
    SYNCED_PROPERTIES,
    CompanyUpdate,
    Filter,
    HubSpotClient,
    NotFound,
    SearchLimitExceeded,
    Sort,
    UniqueValueConflict,
    ValidationFailed,
)


def test_create_get_update_archive(warp_hubspot: HubSpotClient) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    created = warp_hubspot.create_company(company_values(1))
    assert created.id.isdigit()
    assert created.properties["warp_ban"] == "ZT-000000001"
    assert created.created_at is not None and created.created_at >= started
    assert created.archived is False

    by_id = warp_hubspot.get_company(created.id, properties=SYNCED_PROPERTIES)
    assert by_id.properties["warp_services"] == "voice;data"
    assert by_id.properties["warp_contact_email"] == "billing1@acme.example"

    by_ban = warp_hubspot.get_company("ZT-000000001", id_property="warp_ban", properties=["name"])
    assert by_ban.id == created.id

    updated = warp_hubspot.update_company(created.id, {"warp_status": "SUSPENDED", "warp_contact_email": None})
    assert updated.properties["warp_status"] == "SUSPENDED"
    again = warp_hubspot.get_company(created.id, properties=["warp_status", "warp_contact_email"])
    assert again.properties["warp_status"] == "SUSPENDED"
    assert again.properties.get("warp_contact_email") in (None, "")
    assert again.updated_at is not None and again.updated_at >= created.updated_at

    warp_hubspot.update_company("ZT-000000001", {"name": "Acme by BAN"}, id_property="warp_ban")
    assert warp_hubspot.get_company(created.id, properties=["name"]).properties["name"] == "Acme by BAN"

    warp_hubspot.archive_company(created.id)
    with pytest.raises(NotFound):
        warp_hubspot.get_company(created.id)
    archived = warp_hubspot.get_company(created.id, archived=True)
    assert archived.archived is True


def test_a_missing_company_is_not_found(warp_hubspot: HubSpotClient) -> None:
    with pytest.raises(NotFound) as caught:
        warp_hubspot.get_company("ZT-999999999", id_property="warp_ban")
    assert caught.value.status == 404
    assert caught.value.correlation_id


def test_history_reads_carry_times_and_sources(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    company = warp_hubspot.create_company(company_values(2))
    sandbox.control.rep_edit(company.id, {"warp_credit_limit": "2500"})
    read = warp_hubspot.get_company(company.id, properties=["warp_credit_limit"],
                                    properties_with_history=["warp_credit_limit"])
    versions = read.history["warp_credit_limit"]
    assert {v.value for v in versions} >= {"1000.5", "2500"}
    latest = read.last_change("warp_credit_limit")
    assert latest is not None and latest.value == "2500"
    assert latest.source_type == "CRM_UI"
    assert {v.source_type for v in versions if v.value == "1000.5"} == {"INTEGRATION"}

    page = warp_hubspot.list_companies(limit=50, properties_with_history=["warp_credit_limit"])
    assert page.results[0].history["warp_credit_limit"]
    with pytest.raises(ValueError, match="1..50"):
        warp_hubspot.list_companies(limit=100, properties_with_history=["warp_credit_limit"])


@pytest.mark.parametrize(("form", "status"), [("validation_400", 400), ("error_tokens", 400), ("conflict_409", 409)])
def test_a_duplicate_ban_is_a_unique_value_conflict_naming_the_holder_in_every_form(
    warp_hubspot: HubSpotClient, sandbox, form: str, status: int,  # noqa: ANN001
) -> None:
    sandbox.control.configure(unique_conflict_form=form)
    first = warp_hubspot.create_company(company_values(3))
    with pytest.raises(UniqueValueConflict) as caught:
        warp_hubspot.create_company(company_values(3, name="Someone else"))
    conflict = caught.value
    # The holder, never the id the refused write aimed at (the 400's "on <id>").
    assert conflict.existing_id == first.id
    assert conflict.property_name == "warp_ban"
    assert conflict.status == status
    assert warp_hubspot.unique_holder(conflict, property_name="warp_ban", value="ZT-000000003") == first.id


def test_a_holder_the_answer_does_not_name_is_read_by_its_value(
    warp_hubspot: HubSpotClient, sandbox,  # noqa: ANN001
) -> None:
    held = warp_hubspot.create_company(company_values(4))
    unnamed = UniqueValueConflict("the value is taken", property_name="warp_ban")
    assert warp_hubspot.unique_holder(unnamed, property_name="warp_ban", value="ZT-000000004") == held.id
    assert warp_hubspot.unique_holder(unnamed, property_name="warp_ban", value="ZT-000000999") is None


def test_validation_errors_name_each_property(warp_hubspot: HubSpotClient) -> None:
    with pytest.raises(ValidationFailed) as caught:
        warp_hubspot.create_company(
            company_values(4, warp_status="OPEN", warp_credit_limit="lots", warp_nonsense="x")
        )
    error = caught.value
    by_name = {e.name: e for e in error.property_errors}
    assert set(by_name) == {"warp_status", "warp_credit_limit", "warp_nonsense"}
    assert by_name["warp_status"].code == "INVALID_OPTION"
    assert by_name["warp_nonsense"].code == "PROPERTY_DOESNT_EXIST"
    assert by_name["warp_credit_limit"].value == "lots"
    assert error.category == "VALIDATION_ERROR" and error.correlation_id
    assert error.attempts == 1  # a 4xx is never retried


def test_search_filters_sorts_pages_and_the_result_cap(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.seed([company_values(n, warp_status="ACTIVE" if n % 2 else "CLOSED") for n in range(1, 31)])
    active = [Filter("warp_status", "EQ", "ACTIVE")]
    page = warp_hubspot.search_companies(
        filter_groups=[active], sorts=[Sort("warp_ban", "DESCENDING")], properties=["warp_ban", "warp_status"],
        limit=10,
    )
    assert page.total == 15
    assert [c.properties["warp_ban"] for c in page.results][:2] == ["ZT-000000029", "ZT-000000027"]
    assert page.next_after == "10"
    everything = list(warp_hubspot.iter_search_companies(filter_groups=[active], properties=["warp_ban"],
                                                         page_size=4))
    assert len(everything) == 15
    either = warp_hubspot.search_companies(
        filter_groups=[[Filter("warp_ban", "EQ", "ZT-000000002")], [Filter("warp_ban", "EQ", "ZT-000000003")]],
        properties=["warp_ban", "warp_contact_email"],
    )
    assert {c.properties["warp_ban"] for c in either.results} == {"ZT-000000002", "ZT-000000003"}
    with pytest.raises(SearchLimitExceeded):
        warp_hubspot.search_companies(after="10000")
    with pytest.raises(ValueError, match="filter groups"):
        warp_hubspot.search_companies(filter_groups=[active] * 6)


def test_iterating_a_search_over_the_cap_says_so_before_yielding(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.seed([{"name": f"n{n}"} for n in range(10_001)])
    with pytest.raises(SearchLimitExceeded) as caught:
        next(warp_hubspot.iter_search_companies(properties=["name"]))
    assert caught.value.total == 10_001


def test_batch_read_matches_inputs_and_names_the_missing(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    ids = sandbox.control.seed([company_values(n) for n in range(1, 151)])
    wanted = [ids[0], "999999999", *ids[1:120], ids[0]]
    outcomes = warp_hubspot.batch_read_companies(wanted, properties=["warp_ban"])
    assert [o.index for o in outcomes] == list(range(len(wanted)))
    assert outcomes[0].ok and outcomes[0].company.properties["warp_ban"] == "ZT-000000001"
    assert isinstance(outcomes[1].error, NotFound) and outcomes[1].company is None
    assert all(o.ok for o in outcomes[2:])
    assert outcomes[-1].company.id == ids[0]

    by_ban = warp_hubspot.batch_read_companies(["ZT-000000005", "ZT-000000404"], id_property="warp_ban",
                                               properties_with_history=["warp_status"])
    assert by_ban[0].company.id == ids[4] and by_ban[0].company.history["warp_status"]
    assert isinstance(by_ban[1].error, NotFound)


def test_batch_create_update_upsert_archive(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    sandbox.control.reset_counters()
    created = warp_hubspot.batch_create_companies([company_values(n) for n in range(1, 131)])
    assert all(o.ok and o.created for o in created)
    assert [o.company.properties["warp_ban"] for o in created] == [f"ZT-{n:09d}" for n in range(1, 131)]
    counts = sandbox.control.counters()["by_endpoint"]
    assert counts["POST /crm/v3/objects/companies/batch/create"] == 2  # split to 100 + 30

    updates = [CompanyUpdate(o.company.id, {"warp_current_balance": str(o.index)}) for o in created]
    updated = warp_hubspot.batch_update_companies(updates)
    assert all(o.ok for o in updated)
    assert [o.company.id for o in updated] == [o.company.id for o in created]

    by_ban = warp_hubspot.batch_update_companies(
        [CompanyUpdate("ZT-000000007", {"warp_status": "CLOSED"})], id_property="warp_ban"
    )
    assert by_ban[0].ok and by_ban[0].company.id == created[6].company.id

    upserted = warp_hubspot.batch_upsert_companies(
        [CompanyUpdate("ZT-000000001", {"name": "Renamed"}), CompanyUpdate("ZT-000000500", {"name": "New one"})],
        id_property="warp_ban",
    )
    assert [o.created for o in upserted] == [False, True]
    assert upserted[0].company.id == created[0].company.id
    assert warp_hubspot.get_company("ZT-000000500", id_property="warp_ban").id == upserted[1].company.id

    warp_hubspot.batch_archive_companies([o.company.id for o in created[:3]])
    after = warp_hubspot.batch_read_companies([o.company.id for o in created[:4]])
    assert [o.ok for o in after] == [False, False, False, True]


def test_a_207_is_matched_back_to_each_input(warp_hubspot: HubSpotClient) -> None:
    existing = warp_hubspot.create_company(company_values(9))
    inputs = [
        company_values(1),
        company_values(2, warp_payment_terms="NET99"),
        company_values(3),
        company_values(9, name="dup"),  # the BAN is taken
        company_values(4, warp_credit_limit="ten"),
    ]
    outcomes = warp_hubspot.batch_create_companies(inputs)
    assert [o.ok for o in outcomes] == [True, False, True, False, False]
    assert outcomes[0].company.properties["warp_ban"] == "ZT-000000001"
    assert outcomes[2].company.properties["warp_ban"] == "ZT-000000003"
    bad_terms = outcomes[1].error
    assert isinstance(bad_terms, ValidationFailed)
    assert [(e.name, e.code) for e in bad_terms.property_errors] == [("warp_payment_terms", "INVALID_OPTION")]
    conflict = outcomes[3].error
    assert isinstance(conflict, UniqueValueConflict) and conflict.existing_id == existing.id
    assert [e.name for e in outcomes[4].error.property_errors] == ["warp_credit_limit"]


def test_a_batch_refused_whole_is_bisected_to_the_bad_record(
    warp_hubspot: HubSpotClient, sandbox  # noqa: ANN001
) -> None:
    ids = sandbox.control.seed([company_values(n) for n in range(1, 9)])
    whole = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, multi_status=False)
    updates = [CompanyUpdate(i, {"warp_status": "SUSPENDED"}) for i in ids]
    updates[5] = CompanyUpdate(ids[5], {"warp_status": "FROZEN"})
    sandbox.control.reset_counters()
    outcomes = whole.batch_update_companies(updates)
    whole.close()
    assert [o.ok for o in outcomes] == [True] * 5 + [False] + [True] * 2
    error = outcomes[5].error
    assert isinstance(error, ValidationFailed)
    assert [(e.name, e.code) for e in error.property_errors] == [("warp_status", "INVALID_OPTION")]
    # 8 refused -> 4 written + 4 refused -> 2 + 2 refused -> 1 written + the bad one alone
    assert sandbox.control.counters()["by_endpoint"]["POST /crm/v3/objects/companies/batch/update"] == 7
    stored = {c["id"]: c["properties"]["warp_status"] for c in sandbox.control.all_companies()}
    assert [stored[i] for i in ids] == ["SUSPENDED"] * 5 + ["ACTIVE"] + ["SUSPENDED"] * 2


def test_a_whole_batch_unique_conflict_is_bisected_too(warp_hubspot: HubSpotClient, sandbox) -> None:  # noqa: ANN001
    ids = sandbox.control.seed([company_values(n) for n in range(1, 5)])
    whole = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, multi_status=False)
    outcomes = whole.batch_update_companies(
        [CompanyUpdate(ids[0], {"name": "one"}), CompanyUpdate(ids[1], {"warp_ban": "ZT-000000003"}),
         CompanyUpdate(ids[2], {"name": "three"})]
    )
    whole.close()
    assert [o.ok for o in outcomes] == [True, False, True]
    conflict = outcomes[1].error
    assert isinstance(conflict, UniqueValueConflict) and conflict.existing_id == ids[2]


def test_values_must_be_strings(warp_hubspot: HubSpotClient) -> None:
    with pytest.raises(TypeError, match="warp_credit_limit"):
        warp_hubspot.create_company({"name": "x", "warp_credit_limit": 10})  # type: ignore[dict-item]


def test_a_deadline_view_shares_one_deadline(warp_hubspot: HubSpotClient) -> None:
    view = warp_hubspot.with_deadline(0.5)
    view.list_companies(limit=1)
    time.sleep(0.6)
    from warp_sync_pipeline.core.hubspot import BudgetExhausted

    with pytest.raises(BudgetExhausted):
        view.list_companies(limit=1)
    warp_hubspot.list_companies(limit=1)  # the original keeps its own per-call budget


def test_an_input_the_answer_leaves_out_is_read_back_never_assumed_written(
    warp_hubspot: HubSpotClient, sandbox,  # noqa: ANN001
) -> None:
    ids = [o.company.id for o in warp_hubspot.batch_create_companies([company_values(n) for n in (41, 42, 43)])]
    # HubSpot writes all three and names only two in its answer.
    sandbox.control.set_faults(omit_result={"calls": 1, "endpoint": "POST /crm/v3/objects/companies/batch/update"})
    sandbox.control.reset_counters()
    outcomes = warp_hubspot.batch_update_companies(
        [CompanyUpdate(i, {"warp_current_balance": "12.50", "warp_status": "SUSPENDED"}) for i in ids])
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    # The left-out one was read back (numbers compared as numbers): one batch read, no resend.
    by_endpoint = sandbox.control.counters()["by_endpoint"]
    assert by_endpoint["POST /crm/v3/objects/companies/batch/read"] == 1
    assert by_endpoint["POST /crm/v3/objects/companies/batch/update"] == 1
    assert outcomes[2].company is not None and outcomes[2].company.id == ids[2]

