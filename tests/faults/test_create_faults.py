"""The synchronous create under real faults (issue 12, items 2, 4 and 5): the database connection cut during
COMMIT or while HubSpot answers, through a loopback TCP proxy between the receiver and PostgreSQL.

After each case: no WARP customer without its company, no live company without its customer, one company per
BAN, and a retry with the same Idempotency-Key gives the outcome without making anything twice.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from tests.plugins.gunicorn import running_gunicorn
from tests.plugins.outbound import API_TOKEN, AUTH, Receiver, customer_rows, live_companies, running_receiver
from tests.plugins.tcp_proxy import TcpProxy, tcp_proxy_for

BODY = {"company_name": "Cut Wire Ltd", "credit_limit": "2500"}
CREATE = "/v1/customers"
# The create's last statement before its COMMIT (linking the row to its company).
LINK = b"UPDATE customers SET external_ids"
COMMIT = b"COMMIT"
# Short enough that a key whose attempt died is free again within seconds: 3 + 2 x 1 + 1.
FAST_LOCK = {"WARP_CREATE_TIME_BUDGET_SECONDS": 3, "WARP_CREATE_CLEANUP_SECONDS": 1,
             "WARP_IDEMPOTENCY_LOCK_MARGIN_SECONDS": 1}


@pytest.fixture
def proxied(database_url: str, sandbox) -> Iterator[tuple[TcpProxy, Receiver]]:  # noqa: ANN001
    """The receiver's every pool (creates, side transactions, the request budget) goes through the proxy."""
    with tcp_proxy_for(database_url) as (proxy, url), running_receiver(url, sandbox, **FAST_LOCK) as receiver:
        yield proxy, receiver


def _create_cut_at_commit(proxied: tuple[TcpProxy, Receiver], key: str, *, deliver: bool,
                          refuse_afterwards: bool = False):  # noqa: ANN202 - Flask's test response
    """A keyed create whose connection is cut at its COMMIT (after the server got it, or before)."""
    proxy, receiver = proxied
    cut = proxy.cut_at(after=LINK, at=COMMIT, deliver=deliver, refuse_afterwards=refuse_afterwards)
    response = receiver.post(BODY, {"Idempotency-Key": key})
    assert cut.is_set(), "the proxy never saw the create's COMMIT"
    return response


def _key_row(engine: sa.Engine, key: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(
            sa.text("SELECT status, attempt_ban FROM customer_create_idempotency_keys WHERE idempotency_key = :k"),
            {"k": key},
        ).mappings().one())


def _retry_until_the_key_is_free(client: FlaskClient | httpx.Client, key: str, *, within_s: float = 15.0):  # noqa: ANN202
    """Retry as a caller would while the first attempt's key is still locked (409)."""
    deadline = time.monotonic() + within_s
    while True:
        response = client.post(CREATE, json=BODY, headers={**AUTH, "Idempotency-Key": key})
        if response.status_code != 409 or time.monotonic() > deadline:
            return response
        time.sleep(0.5)


def _when_hubspot_has_the_company(sandbox, action: Callable[[], None]) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 10
    while not sandbox.control.all_companies():
        assert time.monotonic() < deadline, "HubSpot never got the create"
        time.sleep(0.02)
    action()


def _assert_one_customer_one_company(engine: sa.Engine, sandbox) -> tuple[dict, dict]:  # noqa: ANN001
    rows, companies = customer_rows(engine), live_companies(sandbox)
    assert len(rows) == 1 and len(companies) == 1, (rows, companies)
    row, company = rows[0], companies[0]
    assert row["hubspot_link_status"] == "linked"
    assert row["external_ids"]["hubspot_company_id"] == company["id"]
    assert company["properties"]["warp_ban"] == row["ban"]
    return row, company


def test_a_commit_whose_answer_is_lost_is_found_committed_and_answered_201(
    proxied: tuple[TcpProxy, Receiver], engine: sa.Engine, sandbox,  # noqa: ANN001
) -> None:
    receiver = proxied[1]
    created = _create_cut_at_commit(proxied, "lost-answer", deliver=True)
    # Before: 500 "rolled back" and the company archived, though the row had committed.
    assert created.status_code == 201, created.get_data(as_text=True)
    row, company = _assert_one_customer_one_company(engine, sandbox)
    assert created.get_json()["data"]["hubspot_sync"]["hubspot_company_id"] == company["id"]
    replay = receiver.post(BODY, {"Idempotency-Key": "lost-answer"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == created.get_json()


def test_a_commit_that_never_reached_the_server_rolls_back_and_archives_the_company(
    proxied: tuple[TcpProxy, Receiver], engine: sa.Engine, sandbox,  # noqa: ANN001
) -> None:
    receiver = proxied[1]
    failed = _create_cut_at_commit(proxied, "never-sent", deliver=False)
    assert failed.status_code == 503, failed.get_data(as_text=True)
    error = failed.get_json()["error"]
    assert error["code"] == "DATABASE_UNAVAILABLE"
    archived = error["hubspot_company_archived"]
    assert customer_rows(engine) == [] and live_companies(sandbox) == []
    assert any(c["id"] == archived and c["archived"] for c in sandbox.control.all_companies())
    assert _key_row(engine, "never-sent")["status"] == "failed"

    again = receiver.post(BODY, {"Idempotency-Key": "never-sent"})
    assert again.status_code == 201, again.get_data(as_text=True)
    _assert_one_customer_one_company(engine, sandbox)


def test_a_commit_whose_fate_cannot_be_asked_keeps_the_company_and_the_retry_learns_it_committed(
    proxied: tuple[TcpProxy, Receiver], engine: sa.Engine, sandbox,  # noqa: ANN001
) -> None:
    proxy, receiver = proxied
    unknown = _create_cut_at_commit(proxied, "fate-unknown", deliver=True, refuse_afterwards=True)
    assert unknown.status_code == 503, unknown.get_data(as_text=True)
    error = unknown.get_json()["error"]
    assert error["code"] == "CREATE_OUTCOME_UNKNOWN"
    assert error["customer_id"] and error["ban"] and error["hubspot_company_id"]
    assert len(live_companies(sandbox)) == 1  # not archived: it may be (and is) a stored customer's

    proxy.heal()
    replay = _retry_until_the_key_is_free(receiver.client, "fate-unknown")
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    row, company = _assert_one_customer_one_company(engine, sandbox)
    assert str(row["id"]) == error["customer_id"] and company["id"] == error["hubspot_company_id"]


def test_an_aborted_commit_whose_fate_cannot_be_asked_is_adopted_by_the_retry(
    proxied: tuple[TcpProxy, Receiver], engine: sa.Engine, sandbox,  # noqa: ANN001
) -> None:
    proxy, receiver = proxied
    unknown = _create_cut_at_commit(proxied, "adopt-me", deliver=False, refuse_afterwards=True)
    assert unknown.get_json()["error"]["code"] == "CREATE_OUTCOME_UNKNOWN"
    first_company = unknown.get_json()["error"]["hubspot_company_id"]

    proxy.heal()
    # The key could not be released while the database was away: it frees when its lock runs out.
    assert _key_row(engine, "adopt-me")["status"] == "in_progress"
    retried = _retry_until_the_key_is_free(receiver.client, "adopt-me")
    assert retried.status_code == 201, retried.get_data(as_text=True)
    assert "Idempotent-Replayed" not in retried.headers
    _, company = _assert_one_customer_one_company(engine, sandbox)
    assert company["id"] == first_company  # adopted, not made again
    assert len(sandbox.control.all_companies()) == 1


def test_a_create_whose_database_goes_away_after_hubspot_made_the_company_archives_it(
    proxied: tuple[TcpProxy, Receiver], engine: sa.Engine, sandbox,  # noqa: ANN001
) -> None:
    proxy, receiver = proxied
    # HubSpot makes the company but holds its answer; meanwhile PostgreSQL becomes unreachable.
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "timeout", "hold_seconds": 1,
                                              "endpoint": "POST /crm/v3/objects/companies"})
    answer: dict = {}
    request = threading.Thread(target=lambda: answer.update(response=receiver.post(BODY, {"Idempotency-Key": "k4"})))
    request.start()
    _when_hubspot_has_the_company(sandbox, lambda: (proxy.refuse(), proxy.cut_all()))
    request.join(30)

    failed = answer["response"]
    # Before: a generic 500, nothing archived (the request budget raised a database error).
    assert failed.status_code == 503, failed.get_data(as_text=True)
    error = failed.get_json()["error"]
    assert error["code"] == "DATABASE_UNAVAILABLE"
    assert error["hubspot_company_archived"] == sandbox.control.all_companies()[0]["id"]
    assert live_companies(sandbox) == []

    proxy.heal()
    assert customer_rows(engine) == []
    retried = _retry_until_the_key_is_free(receiver.client, "k4")
    assert retried.status_code == 201, retried.get_data(as_text=True)
    _assert_one_customer_one_company(engine, sandbox)


def test_a_receiver_worker_killed_mid_create_leaves_one_company_which_the_retry_adopts(
    database_url: str, engine: sa.Engine, sandbox, tmp_path: Path,  # noqa: ANN001
) -> None:
    env = {"WARP_API_TOKEN": API_TOKEN, "HUBSPOT_BASE_URL": sandbox.base_url,
           "HUBSPOT_ACCESS_TOKEN": sandbox.access_token, **{k: str(v) for k, v in FAST_LOCK.items()}}
    with running_gunicorn(database_url, tmp_path / "receiver.ctl", "--workers", "1", env=env) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as client:
        # HubSpot makes the company and holds its answer; the worker dies before it hears back.
        sandbox.control.set_faults(after_success={"calls": 1, "mode": "timeout", "hold_seconds": 30,
                                                  "endpoint": "POST /crm/v3/objects/companies"})
        (worker,) = server.worker_pids()
        lost: list[BaseException] = []

        def first_attempt() -> None:
            try:
                client.post(CREATE, json=BODY, headers={**AUTH, "Idempotency-Key": "killed"})
            except httpx.HTTPError as exc:
                lost.append(exc)

        request = threading.Thread(target=first_attempt)
        request.start()
        _when_hubspot_has_the_company(sandbox, lambda: os.kill(worker, signal.SIGKILL))
        request.join(30)
        assert lost, "the first attempt was answered: the worker was killed too late"
        sandbox.control.clear_faults()
        (first_company,) = sandbox.control.all_companies()
        assert customer_rows(engine) == []  # the row died with the worker's transaction

        # Before: the retry created a second customer and company, the first company left orphaned.
        retried = _retry_until_the_key_is_free(client, "killed", within_s=30)
        assert retried.status_code == 201, retried.text
        _, company = _assert_one_customer_one_company(engine, sandbox)
        assert company["id"] == first_company["id"]
        assert len(sandbox.control.all_companies()) == 1
