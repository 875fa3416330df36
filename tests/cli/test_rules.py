"""`warp-sync rules`: a data-team member drafts a rule change, reads it, publishes it and rolls it back."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from warp_sync_pipeline.cli import main


def run(database_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["rules", *args], env={"WARP_DATABASE_URL": database_url})
    return result.exit_code, result.output


def strategy(engine: sa.Engine, field: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT strategy FROM hubspot_field_mappings WHERE warp_field = :f"),
                            {"f": field}).scalar_one()


def test_draft_show_publish_and_roll_back_from_the_shell(database_url: str, engine: sa.Engine) -> None:
    assert run(database_url, "draft", "create", "credit-latest", "--by", "ana")[0] == 0
    code, out = run(database_url, "draft", "set", "credit-latest", "credit_limit", "--strategy", "LATEST_WINS")
    assert code == 0, out
    code, out = run(database_url, "draft", "show", "credit-latest")
    assert "valid" in out and "credit_limit: strategy HUBSPOT_WINS -> LATEST_WINS" in out
    assert "no preview yet: `warp-sync reconcile --rule-draft credit-latest`" in out
    assert strategy(engine, "credit_limit") == "HUBSPOT_WINS"

    code, out = run(database_url, "publish", "credit-latest", "--by", "ana")
    assert code == 0 and "published; the rules it replaced are kept as version 1" in out
    assert strategy(engine, "credit_limit") == "LATEST_WINS"
    [shown] = [line.split() for line in run(database_url, "show")[1].splitlines() if "credit_limit" in line]
    assert shown == ["credit_limit", "warp_credit_limit", "BIDIRECTIONAL", "LATEST_WINS"]

    code, out = run(database_url, "rollback", "--by", "bo")
    assert code == 0 and strategy(engine, "credit_limit") == "HUBSPOT_WINS"
    versions = run(database_url, "versions")[1]
    assert "version 2: replaced by a rollback to version 1, by bo" in versions
    assert "version 1: replaced by draft credit-latest, by ana" in versions


def test_a_bad_rule_is_refused_with_its_code(database_url: str) -> None:
    run(database_url, "draft", "create", "oops")
    code, out = run(database_url, "draft", "set", "oops", "status", "--strategy", "HUBSPOT_WINS")
    assert code == 2 and "INVALID_FIELD_MAPPING" in out and "won by the side it flows from" in out
    code, out = run(database_url, "publish", "nothing-here")
    assert code == 2 and "DRAFT_NOT_FOUND" in out
