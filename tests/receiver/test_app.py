from __future__ import annotations

from warp_sync_pipeline.devstack.localpg import free_port
from webhook_receiver import create_app


def test_healthz_is_ok_with_the_database_up(database_url: str) -> None:
    client = create_app({"DATABASE_URL": database_url, "TESTING": True}).test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": {"status": "ok", "database": "ok"}}


def test_healthz_is_503_with_the_database_down() -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nowhere"
    client = create_app({"DATABASE_URL": url, "TESTING": True}).test_client()
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert "nowhere" not in body["error"]["message"]


def test_unknown_routes_and_methods_answer_the_json_error_shape(database_url: str) -> None:
    client = create_app({"DATABASE_URL": database_url, "TESTING": True}).test_client()
    missing = client.get("/no/such/route")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "NOT_FOUND"
    assert missing.get_json()["success"] is False
    wrong = client.post("/healthz")
    assert wrong.status_code == 405
    assert wrong.get_json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in wrong.headers["Allow"]
