"""Every command `make demo` prints works when pasted into a shell with the virtualenv activated: the demo runs in
a state folder of its own (its private PostgreSQL, sandbox, mail catcher, Dagster code server and daemon), then
each printed command runs in a plain `bash` whose only warp-sync setting is that folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import pytest

from tests import REPO
from tests.plugins.database import scratch_database

BIN = Path(sys.executable).parent
# A command is `make TARGET` or `warp-sync ...` up to two spaces (what follows is a comment), or a backticked one.
COMMAND = re.compile(r"(?:(?<=^)|(?<=:)|(?<=\s))((?:make|warp-sync) [^\s`(][^`(]*?)(?=\s{2}|\s*\(|$)|`([^`]+)`")


def printed_commands(output: str) -> list[str]:
    """The commands a person would paste from the demo's output, in order, each once."""
    found: list[str] = []
    for line in output.splitlines():
        for plain, quoted in COMMAND.findall(line.split(":", 1)[1] if ":" in line else line):
            command = (plain or quoted).strip()
            if command.startswith(("make ", "warp-sync ", "eval ")) and command not in found:
                found.append(command)
    return found


@pytest.fixture
def shell_env(tmp_path: Path, database_url: str, pg_admin_url: str) -> Iterator[dict[str, str]]:
    """A shell with the virtualenv activated and a state folder of its own; everything is removed afterwards. Its
    databases are on the suite's PostgreSQL (WARP_DATABASE_URL, as a developer with a server of their own sets it),
    which spares the suite a second server; the private cluster is `make clean`'s test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "HUBSPOT_", "SMTP_", "DAGSTER_"))}
    env.update(PATH=f"{BIN}:{env.get('PATH', '')}", VIRTUAL_ENV=str(BIN.parent), WARP_STATE_DIR=str(tmp_path / "state"),
               WARP_DATABASE_URL=database_url)
    with scratch_database(pg_admin_url, "warp_test_demo_dagster") as dagster_url:
        env["WARP_DAGSTER_DATABASE_URL"] = dagster_url
        try:
            yield env
        finally:
            subprocess.run([str(BIN / "warp-sync"), "clean"], env=env, capture_output=True, timeout=120)


def counts(output: str) -> dict[str, int]:
    """The report's counts as `warp-sync reconcile` prints them (`    Changes written to HubSpot        9`)."""
    found = re.findall(r"^ {4}([A-Z][A-Za-z: ]+?) {2,}([\d,]+)$", output, flags=re.MULTILINE)
    return {name: int(value.replace(",", "")) for name, value in found}


def _the_shells_runs_are_the_code_locations(ui_url: str, run_ids: list[str], state: Path) -> None:
    """Seen in the UI `make dev` serves: the shell's dry run is in the job's run list with the job's tags (so the
    queue's limits and the sensors apply), and kept its own frames under DAGSTER_HOME."""
    assert run_ids
    query = ("query($id: ID!) { runOrError(runId: $id) { ... on Run { status pipelineName "
             "repositoryOrigin { repositoryLocationName } tags { key value } } } }")
    for run_id in run_ids:
        run = httpx.post(f"{ui_url}/graphql", json={"query": query, "variables": {"id": run_id}},
                         timeout=30).json()["data"]["runOrError"]
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        assert (run["status"], run["pipelineName"]) == ("SUCCESS", "reconciliation_job")
        assert run["repositoryOrigin"]["repositoryLocationName"] == "warp_sync_pipeline"
        assert tags["warp/flow"] == "reconciliation" and tags["warp/hubspot-bulk"] == "pull"
        assert tags["warp/started-from"] == "shell" and tags["warp/dry-run"] == "true"
        frames = state / "dagster-home" / "storage" / "frames" / "runs" / run_id / "assets"
        assert (frames / "warp_customers.parquet").exists()


def _bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_the_parser_finds_the_commands_a_person_would_paste() -> None:
    assert printed_commands(
        "next: warp-sync reconcile --dry-run  (then without --dry-run to write both sides)\n"
        "Dagster UI:     make dev   (then open the run printed above; the receiver starts too)\n"
        "by hand:        warp-sync reconcile --dry-run  (... `eval \"$(warp-sync env)\"` for other commands)\n"
        "stop it all:    make stop\n") == ["warp-sync reconcile --dry-run", "make dev", 'eval "$(warp-sync env)"',
                                          "make stop"]


@pytest.mark.early  # about four minutes: it must not start last
def test_every_command_the_demo_prints_works_pasted_into_a_shell(shell_env: dict[str, str]) -> None:
    # `make demo` runs `warp-sync demo` (1,000 customers); the first demo seeds 300, to keep the suite quick. The
    # `make demo` it prints then runs as pasted, reusing them.
    demo = _bash("warp-sync demo --customers 300", shell_env)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    commands = printed_commands(demo.stdout)
    assert {"warp-sync reconcile --dry-run", "make dev", "make demo", "make stop"} <= set(commands), commands
    # The emailed report is a web page.
    [link] = [line.split()[-1] for line in demo.stdout.splitlines() if line.startswith("emailed report:")]
    assert "Reconciliation report: succeeded" in httpx.get(link, timeout=10).text
    _the_demos_email_reads_well(link.replace("/message/", "/raw/"), shell_env)
    # The demo's nightly wrote (its data differs on purpose); the second (`make demo` again) finds nothing to change.
    first = counts(demo.stdout)
    assert first["Changes written to HubSpot"] > 0 and first["Changes written to WARP"] > 0, first
    assert "1 x one warp_ban on two companies" in demo.stdout and "contact_email is settled by MANUAL" in demo.stdout
    # The nightly went through the run queue and the shell followed it: the stages' progress, then the counts.
    assert "submitted to the run queue" in demo.stdout
    assert "    HubSpot pull: 300 companies in 3 pages" in demo.stdout.splitlines()
    assert "    WARP pull: 300 customers" in demo.stdout.splitlines()
    assert any(line.startswith("    HubSpot write-back: ") for line in demo.stdout.splitlines())
    reseed = _bash("warp-sync exec warp-sync demo-seed --customers 300", shell_env)  # exec: the stack's settings
    assert reseed.returncode == 2 and "DEMO_DATA_PRESENT" in reseed.stderr
    ui_url = f"http://127.0.0.1:{json.loads(Path(shell_env['WARP_STATE_DIR'], 'demo-env.json').read_text())['dagster_port']}"
    run_ids = []

    for command in commands:
        if command == "make stop":
            continue  # last: the others need the stack
        pasted = _bash(command if not command.startswith("eval ") else f"{command} && warp-sync queue status",
                       shell_env)
        assert pasted.returncode == 0, (command, pasted.stdout[-2000:], pasted.stderr[-2000:])
        run_ids += re.findall(r"^    run ([0-9a-f-]{36}): succeeded", pasted.stdout, flags=re.MULTILINE)
        if command == "make dev":
            _the_shells_runs_are_the_code_locations(ui_url, run_ids, Path(shell_env["WARP_STATE_DIR"]))
        if command == "make demo":
            again = counts(pasted.stdout)
            assert "reusing the" in pasted.stdout
            assert again["Changes planned to HubSpot"] == again["Changes planned to WARP"] == 0, again
    stopped = _bash("make stop", shell_env)
    assert stopped.returncode == 0 and "nothing left running" in stopped.stdout, stopped.stdout + stopped.stderr


def _the_demos_email_reads_well(raw_url: str, shell_env: dict[str, str]) -> None:
    """Subject, plain text and HTML: what needs doing, in words, linked to the stack's Dagster and review pages."""
    message = BytesParser(policy=policy.default).parsebytes(httpx.get(raw_url, timeout=10).content)
    assert re.fullmatch(r"\[warp-sync\] Reconciliation: [\d,]+ needs? review, [\d,]+ changes? written, 0 errors "
                        r"- run [0-9a-f]{8}", message["Subject"]), message["Subject"]
    ports = json.loads(Path(shell_env["WARP_STATE_DIR"], "demo-env.json").read_text())
    text = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(preferencelist=("html",)).get_content()
    assert f"The run in Dagster: http://127.0.0.1:{ports['dagster_port']}/runs/" in text
    assert f"needs a person: http://127.0.0.1:{ports['receiver_port']}/review/conflicts" in text
    assert "WARP contact email (contact_email)" in text and re.search(r"^THE LAST \d* ?RUNS?$", text, re.M)
    receiver = f"http://127.0.0.1:{ports['receiver_port']}"
    assert f'href="{receiver}/review/customers/' in html
    assert 'href="https://app.hubspot.com/contacts/' in html
    assert "_WINS" not in text and "_CHANGED" not in text  # reasons in words, not codes
