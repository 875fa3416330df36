"""One Dagster deployment for the tests that need a running Dagster: code server, daemon and webserver.

`dagster_stack` (session scope) runs what production runs, as separate processes on loopback ports:
- a code server (`dagster code-server start -m warp_sync_pipeline.definitions`), which launches each run
  in a process of its own, as in production;
- `dagster-daemon run` (the run queue, sensors, schedules, run monitoring);
- `dagster-webserver` (the UI and its GraphQL API),
all on an instance made from the project's dagster.yaml (dagster-postgres storage in a database of its
own) with only the waits shortened: the queue is looked at every second and run monitoring every two,
so a test follows a run (or a failure) in seconds. Its WARP database is a clone of the suite's template,
its HubSpot is a sandbox of its own (`stack_sandbox`), and its mail goes to an SMTP catcher of its own
(aiosmtpd, `stack_mail`): its sensors and schedules keep running between its tests and must not reach
another test's sandbox.

Tests that use it are put in one xdist group (`dagster_stack`, see `pytest_collection_modifyitems`), so
with `--dist loadgroup` the stack starts once, on one worker. `stack_database` empties its WARP
database before a test (TRUNCATE, then the seeded rows put back), since the stack's processes keep the
URL they started with; `stack_mail` empties its mail catcher. A test submits runs with `launch()` (through the run queue, as a sensor or a
person does) and waits with `wait_for_run()`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import psycopg2.errors
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import make_url

from hubspot_sandbox.control import SandboxControl
from tests import REPO
from tests.plugins.database import scratch_database
from tests.plugins.sandbox import (
    SANDBOX_ACCESS_TOKEN,
    SANDBOX_CLIENT_SECRET,
    SandboxHandle,
    new_sandbox_server,
)
from tests.plugins.smtp import LOOPBACK, SmtpCatcher, start_catcher
from warp_sync_pipeline.devstack.localpg import _raw_connect, free_port

BIN = Path(sys.executable).parent
LOCATION = "warp_sync_pipeline"
STACK_GROUP = "dagster_stack"
CODE_SERVER = "code-server"
# In start order: the daemon and the webserver start once the code server listens (no load error first).
STACK_PROCESSES = (CODE_SERVER, "daemon", "webserver")
START_TIMEOUT_S = 120
# Final states of a run, as the GraphQL API names them.
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

# Only the waits differ from the project's dagster.yaml.
INSTANCE_OVERRIDES: dict[str, dict[str, Any]] = {
    "run_coordinator": {"config": {"dequeue_interval_seconds": 1}},
    "run_monitoring": {"poll_interval_seconds": 2, "start_timeout_seconds": 60, "cancel_timeout_seconds": 60},
}


# The flows' budgets, short so a fault test waits seconds, not minutes: a drain run stops claiming after 1 s and
# its calls after 5 s (maximum runtime 1 + 5 + 5 = 11 s), a webhook run after 1 s (1 + lease 6 + 5 = 12 s),
# claims lapse after 6 s, the sensors tick every 5 s.
FLOW_SETTINGS = {
    "WARP_QUEUE_RUN_SECONDS": "1",
    "WARP_QUEUE_HTTP_BUDGET_SECONDS": "5",
    "WARP_QUEUE_LEASE_SECONDS": "6",
    "WARP_QUEUE_BACKOFF_SECONDS": "0",
    "WARP_QUEUE_SENSOR_INTERVAL_SECONDS": "5",
    "WARP_WEBHOOK_RUN_SECONDS": "1",
    "WARP_WEBHOOK_LEASE_SECONDS": "6",
    "WARP_WEBHOOK_RETRY_SECONDS": "1",
    "WARP_WEBHOOK_SENSOR_INTERVAL_SECONDS": "5",
    "WARP_RUN_MARGIN_SECONDS": "5",
    "HUBSPOT_TIME_BUDGET_SECONDS": "5",
    "WARP_ALERT_SENSOR_INTERVAL_SECONDS": "5",
}
# Where the stack's alerts post (its outgoing webhook; stack_webhook empties it per test).
WEBHOOK_PATH = "/hooks/alerts"


@dataclass
class DagsterStack:
    url: str  # the webserver
    web_port: int
    home: Path  # DAGSTER_HOME
    database_url: str  # the WARP database the stack's runs and sensors use
    hubspot: SandboxHandle  # the stack's own sandbox: its sensors and schedules never reach other tests' sandbox
    mail: SmtpCatcher  # where the stack's reports and alerts are sent
    webhook: HTTPServer  # where the stack's alerts are posted (WARP_ALERT_WEBHOOK_URL)
    environment: dict[str, str]  # what the stack's processes were started with
    # Where the stack's reports link the review pages (WARP_PUBLIC_BASE_URL): a test serves the receiver there.
    review_port: int = 0
    logs: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Start one of the stack's processes again, on its port (set by the fixture, which owns their lifetimes).
    _starters: dict[str, Callable[[], subprocess.Popen[bytes]]] = field(default_factory=dict, repr=False)
    _tables: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def code_server(self) -> subprocess.Popen[bytes] | None:
        return self.processes.get(CODE_SERVER)

    def kill_code_server(self) -> None:
        """SIGKILL to the code server's process group: the server and every run worker it started, as when its
        host or container dies. Nothing is told; the runs it held stay STARTED until the instance acts."""
        self._kill(CODE_SERVER)

    def start_code_server(self) -> None:
        """A new code server on the same port (as a supervisor would restart it); the daemon and the webserver
        find it there."""
        self.processes[CODE_SERVER] = self._starters[CODE_SERVER]()

    def kill_everything(self) -> None:
        """SIGKILL to every process group of the stack (the code server with its run workers, the daemon, the
        webserver), as when the host or its containers restart."""
        for name in STACK_PROCESSES:
            self._kill(name)

    def start_everything(self) -> None:
        """The whole stack again on the same ports, as its supervisor would bring it back after a restart."""
        for name in STACK_PROCESSES:
            self.processes[name] = self._starters[name]()
        _wait_until_loaded(self, self.processes)

    def _kill(self, name: str) -> None:
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def runs(self, job: str, statuses: Sequence[str] = ()) -> list[tuple[str, str]]:
        """(run id, status) of the job's runs, newest first, optionally only in `statuses` (GraphQL names)."""
        query = ("query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results { runId "
                 "status } } } }")
        run_filter: dict[str, Any] = {"pipelineName": job}
        if statuses:
            run_filter["statuses"] = list(statuses)
        return [(r["runId"], r["status"]) for r in self._graphql(query, filter=run_filter)["runsOrError"]["results"]]

    @property
    def graphql(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.web_port)

    def launch(self, job: str, *, run_config: Mapping[str, Any] | None = None,
               tags: Mapping[str, str] | None = None) -> str:
        """Submit a run through the run queue (the daemon launches it); returns its id."""
        return self.graphql.submit_job_execution(job, repository_location_name=LOCATION,
                                                 run_config=dict(run_config or {}), tags=dict(tags or {}))

    def run_status(self, run_id: str) -> str:
        return self.graphql.get_run_status(run_id).value

    def wait_for_run(self, run_id: str, timeout_s: float = 90, statuses: set[str] = FINISHED) -> str:
        """Poll until the run reaches one of `statuses`; fail the test with the logs' tails otherwise."""
        deadline = time.monotonic() + timeout_s
        status = ""
        while time.monotonic() < deadline:
            status = self.run_status(run_id)
            if status in statuses:
                return status
            time.sleep(0.25)
        pytest.fail(f"run {run_id} still {status} after {timeout_s} s\n{self.log_tails()}")

    def _graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=10).json()
        if answer.get("errors"):
            raise AssertionError(f"GraphQL refused the query: {answer['errors']}")
        return answer["data"]

    def run_tags(self, run_id: str) -> dict[str, str]:
        query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }"
        return {tag["key"]: tag["value"] for tag in self._graphql(query, id=run_id)["runOrError"]["tags"]}

    def run_worker_pid(self, run_id: str) -> int | None:
        """The process the code server started for the run, from the run's event log ("Started process")."""
        query = ("query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events { "
                 "... on EngineEvent { message metadataEntries { label ... on TextMetadataEntry { text } "
                 "... on IntMetadataEntry { intValue } } } } } } }")
        for event in self._graphql(query, runId=run_id)["logsForRun"].get("events", []):
            if event and event.get("message", "").startswith("Started process for run"):
                pids = [e.get("intValue") or e.get("text") for e in event["metadataEntries"] if e["label"] == "pid"]
                if pids:
                    return int(pids[0])
        return None

    def run_messages(self, run_id: str) -> list[str]:
        """The messages of the run's event log, oldest first."""
        query = ("query($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events { "
                 "... on MessageEvent { message } } } } }")
        return [e.get("message") or "" for e in self._graphql(query, runId=run_id)["logsForRun"].get("events", []) if e]

    def log_tails(self, lines: int = 20) -> str:
        parts = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {name} ({path})\n" + "\n".join(text))
        return "\n".join(parts)

    # -- the WARP database between tests -----------------------------------------------------------------
    def remember_seeded_rows(self) -> None:
        """Keep the rows the migrations seeded (the field rules), to put back after each TRUNCATE."""
        with _connect(self.database_url) as conn, conn.cursor() as cur:
            for table in _tables(cur):
                buffer = io.BytesIO()
                cur.copy_expert(f'COPY "{table}" TO STDOUT', buffer)
                if buffer.getvalue():
                    self._tables[table] = buffer.getvalue()

    def empty_database(self) -> None:
        """Every table back to what the migrations left: TRUNCATE, then the seeded rows copied back in.

        The stack keeps running meanwhile (a sensor tick, the run a previous test's flow started), and TRUNCATE
        takes its locks table by table: PostgreSQL may end it as one side of a deadlock. Then it tries again."""
        for attempt in range(5):
            try:
                with _connect(self.database_url) as conn, conn.cursor() as cur:
                    cur.execute("SET lock_timeout = '10s'")
                    tables = [t for t in _tables(cur) if t != "warp_schema_migrations"]
                    cur.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
                    # As the migrations left them: no trigger (the mapping audit) records the copy as an edit.
                    cur.execute("SET LOCAL session_replication_role = replica")
                    for table, rows in self._tables.items():
                        if table in tables:
                            cur.copy_expert(f'COPY "{table}" FROM STDIN', io.BytesIO(rows))
                return
            except psycopg2.errors.DeadlockDetected:
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))


@contextmanager
def _connect(url: str) -> Iterator[psycopg2.extensions.connection]:
    """One transaction on a connection of its own: committed if the block ends well, and closed."""
    conn = _raw_connect(url)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def _tables(cur: psycopg2.extensions.cursor) -> list[str]:
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    return [row[0] for row in cur.fetchall()]


def _merged(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out.get(key) or {}, value) if isinstance(value, Mapping) else value
    return out


def _write_instance(home: Path, storage_db: str, grpc_port: int) -> dict[str, str]:
    template = yaml.safe_load((REPO / "warp_sync_pipeline" / "instance" / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump(_merged(template, INSTANCE_OVERRIDES), sort_keys=False))
    (home / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [
        {"grpc_server": {"host": "127.0.0.1", "port": grpc_port, "location_name": LOCATION}}]}))
    storage = make_url(storage_db)
    return {
        "DAGSTER_HOME": str(home),
        "WARP_DAGSTER_PG_HOST": storage.host or "127.0.0.1",
        "WARP_DAGSTER_PG_PORT": str(storage.port or 5432),
        "WARP_DAGSTER_PG_USER": storage.username or "postgres",
        "WARP_DAGSTER_PG_PASSWORD": storage.password or "",
        "WARP_DAGSTER_PG_DB": storage.database or "",
    }


def _start(name: str, argv: list[str], env: dict[str, str], home: Path,
           stack: ExitStack) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = home / f"{name}.log"
    log = stack.enter_context(open(log_path, "wb"))  # noqa: SIM115 - closed by the exit stack
    # A session of its own: stopping the group also stops what it spawned (the code server's run workers).
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    stack.callback(_stop, process)
    return process, log_path


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(20)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_for_port(port: int, process: subprocess.Popen[bytes], stack: DagsterStack) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the code server exited while starting\n{stack.log_tails()}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the code server did not listen within {START_TIMEOUT_S} s\n{stack.log_tails()}")


def _wait_until_loaded(stack: DagsterStack, processes: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """The webserver answers and shows the code location loaded, and the daemon's run queue reports in."""
    deadline = time.monotonic() + START_TIMEOUT_S
    query = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
             "locationOrLoadError { __typename ... on PythonError { message } } } } } "
             "instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }")
    reload = {"query": "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) "
                       "{ __typename } }", "variables": {"name": LOCATION}}
    last = ""
    while time.monotonic() < deadline:
        dead = [name for name, process in processes.items() if process.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while starting\n{stack.log_tails()}")
        try:
            answer = httpx.post(f"{stack.url}/graphql", json={"query": query}, timeout=5).json()["data"]
            [entry] = [e for e in answer["workspaceOrError"]["locationEntries"] if e["name"] == LOCATION]
            daemons = {d["daemonType"]: d["healthy"] for d in answer["instance"]["daemonHealth"]["allDaemonStatuses"]}
            loaded = entry["loadStatus"] == "LOADED"
            if loaded and entry["locationOrLoadError"]["__typename"] == "PythonError":
                # The code server may still have been loading when the webserver first asked: ask again.
                last = entry["locationOrLoadError"]["message"]
                httpx.post(f"{stack.url}/graphql", json=reload, timeout=30)
            elif loaded and daemons.get("QUEUED_RUN_COORDINATOR"):
                return
            else:
                last = f"location {entry['loadStatus']}, daemons {daemons}"
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"the Dagster stack did not come up within {START_TIMEOUT_S} s ({last})\n{stack.log_tails()}")


@pytest.fixture(scope="session")
def dagster_stack(
    pg_admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DagsterStack]:
    home = tmp_path_factory.mktemp("dagster-stack")
    with ExitStack() as stack:
        storage_db = stack.enter_context(scratch_database(pg_admin_url, "warp_test_dagster"))
        warp_db = stack.enter_context(scratch_database(pg_admin_url, "warp_test_stack", template=template_database))
        sandbox_server = stack.enter_context(new_sandbox_server())
        control = stack.enter_context(SandboxControl(sandbox_server.base_url))
        hubspot = SandboxHandle(sandbox_server.base_url, SANDBOX_ACCESS_TOKEN, SANDBOX_CLIENT_SECRET, control)
        mail = SmtpCatcher(host=LOOPBACK, port=0)
        stack.callback(start_catcher(mail).stop)
        webhook = HTTPServer(host=LOOPBACK, port=0)
        webhook.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("ok")
        webhook.start()
        stack.callback(webhook.stop)
        grpc_port, web_port, review_port = free_port(), free_port(), free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "HUBSPOT_", "SMTP_", "DAGSTER_"))}
        environment = {
            **_write_instance(home, storage_db, grpc_port),
            # What `warp-sync reconcile` needs to submit runs to this stack from a shell.
            "WARP_DAGSTER_DATABASE_URL": storage_db,
            "WARP_DAGSTER_WORKSPACE": str(home / "workspace.yaml"),
            "WARP_DATABASE_URL": warp_db,
            "WARP_STATE_DIR": str(home / "state"),
            "HUBSPOT_BASE_URL": sandbox_server.base_url,
            "HUBSPOT_ACCESS_TOKEN": SANDBOX_ACCESS_TOKEN,
            "HUBSPOT_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
            **mail.environ(),
            "WARP_ALERT_WEBHOOK_URL": webhook.url_for(WEBHOOK_PATH),
            # The reports link runs to this webserver and the review pages to where a test serves them.
            "WARP_DAGSTER_UI_URL": f"http://127.0.0.1:{web_port}",
            "WARP_PUBLIC_BASE_URL": f"http://127.0.0.1:{review_port}",
            **FLOW_SETTINGS,
        }
        env = {**inherited, **environment}
        workspace = str(home / "workspace.yaml")
        # Each is stopped (with what it spawned) when the session ends. The daemon and the webserver start
        # once the code server listens, so they do not begin with a load error.
        code_server_argv = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(grpc_port),
                            "-m", "warp_sync_pipeline.definitions", "--location-name", LOCATION]
        running = DagsterStack(url=f"http://127.0.0.1:{web_port}", web_port=web_port, home=home,
                               database_url=warp_db, hubspot=hubspot, mail=mail, webhook=webhook,
                               environment=environment, review_port=review_port)

        def starter(name: str, argv: list[str], port: int | None = None) -> Callable[[], subprocess.Popen[bytes]]:
            def start() -> subprocess.Popen[bytes]:
                # Each start logs to a file of its own (code-server.log, code-server-2.log, ...).
                starts = sum(1 for logged in running.logs if logged.split("-")[0] == name.split("-")[0])
                log_name = name if not starts else f"{name}-{starts + 1}"
                process, running.logs[log_name] = _start(log_name, argv, env, home, stack)
                if port is not None:
                    _wait_for_port(port, process, running)
                return process
            return start

        running._starters = {
            CODE_SERVER: starter(CODE_SERVER, code_server_argv, grpc_port),
            "daemon": starter("daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace]),
            "webserver": starter("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                                               "-w", workspace]),
        }
        for name in STACK_PROCESSES:
            running.processes[name] = running._starters[name]()
        _wait_until_loaded(running, running.processes)
        running.remember_seeded_rows()
        yield running
        shutil.rmtree(home / "state", ignore_errors=True)


@pytest.fixture
def stack_database(dagster_stack: DagsterStack) -> str:
    """The stack's WARP database, emptied for this test (as freshly migrated); returns its URL."""
    dagster_stack.empty_database()
    return dagster_stack.database_url


@pytest.fixture
def stack_sandbox(dagster_stack: DagsterStack) -> Iterator[SandboxHandle]:
    """The stack's HubSpot sandbox, reset for this test (held requests released afterwards)."""
    dagster_stack.hubspot.control.reset()
    yield dagster_stack.hubspot
    dagster_stack.hubspot.control.clear_faults()


@pytest.fixture
def stack_mail(dagster_stack: DagsterStack) -> SmtpCatcher:
    """The stack's mail catcher, emptied for this test."""
    dagster_stack.mail.clear()
    return dagster_stack.mail


@pytest.fixture
def stack_webhook(dagster_stack: DagsterStack) -> HTTPServer:
    """The stack's alert webhook receiver, its log emptied for this test."""
    dagster_stack.webhook.clear_log()
    return dagster_stack.webhook


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the stack goes to one xdist group, so one worker starts it once; the group goes first,
    so its minute of serial work (fault tests wait on real timeouts) overlaps the rest instead of trailing it."""
    on_stack = [item for item in items if "dagster_stack" in getattr(item, "fixturenames", ())]
    for item in on_stack:
        item.add_marker(pytest.mark.xdist_group(STACK_GROUP))
    # Long tests marked early start next, on the other workers, instead of trailing the suite.
    early = [item for item in items if item not in on_stack and item.get_closest_marker("early")]
    items[:] = on_stack + early + [item for item in items if item not in on_stack and item not in early]

