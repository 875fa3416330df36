"""Every alert condition at once, on the suite's running Dagster stack: the daemon's sensors see them and each
alert arrives by email and by the outgoing webhook within 90 s. (Each condition's logic is tested through sensor
contexts in tests/defs/test_alerts.py and tests/core/test_alerts.py.)"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from tests.plugins.alerts import EVERY_CONDITION, raise_every_condition
from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.sandbox import SandboxHandle
from tests.plugins.smtp import SmtpCatcher

DEADLINE_S = 90


def test_every_alert_condition_reaches_email_and_webhook_within_90_seconds(
    dagster_stack: DagsterStack, stack_database: str, stack_sandbox: SandboxHandle, stack_mail: SmtpCatcher,
    stack_webhook: HTTPServer,
) -> None:
    started = time.monotonic()
    engine = sa.create_engine(stack_database)
    try:
        raise_every_condition(engine)
    finally:
        engine.dispose()
    # And a failed run: the nightly, refused by the open pause as soon as it calls HubSpot.
    run_id = dagster_stack.launch("reconciliation_job",
                                  run_config={"resources": {"reconciliation": {"config": {"dry_run": True}}}})
    assert dagster_stack.wait_for_run(run_id) == "FAILURE"

    expected = {f"[warp-sync] ALERT: reconciliation_job failed - run {run_id[:8]}"}
    deadline = started + DEADLINE_S
    while time.monotonic() < deadline:
        subjects = {message["Subject"] for message in stack_mail.messages}
        posted = {json.loads(request.data)["text"].splitlines()[0] for request, _ in stack_webhook.log}
        if len(subjects) >= len(EVERY_CONDITION) + 1 and len(posted) >= len(EVERY_CONDITION) + 1:
            break
        time.sleep(0.5)
    assert subjects == posted, "email and webhook carry the same alerts"
    assert expected <= subjects
    assert len(subjects) == len(EVERY_CONDITION) + 1, subjects
    assert all(subject.startswith("[warp-sync] ALERT: ") for subject in subjects)
    assert "[warp-sync] ALERT: 1 queue row(s) dead-lettered" in subjects
    assert "[warp-sync] ALERT: check hubspot_companies.unique_warp_ban failed" in subjects
