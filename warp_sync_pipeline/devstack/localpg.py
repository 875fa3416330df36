"""A private PostgreSQL cluster for the demo and the tests, from the machine's PostgreSQL binaries.

Route chosen (see README): Debian's (or any distribution's) server binaries driven by `initdb` and
`pg_ctl`. Starting takes about a second and has no side effects outside the cluster's folder.
`initdb` refuses to run as root, so as root the cluster runs as the `postgres` system user and its
data lives outside the checkout in a folder that user owns; the state folder records where.
The server is started detached (`pg_ctl start`), so it outlives the command that started it and the
next command reuses it; `stop()` ends it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg2

SERVER_USER = "postgres"
SUPERUSER = "postgres"


class LocalPostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """Where `initdb`, `pg_ctl` and `postgres` live; installs Debian's server when root and absent."""
    for candidate in _bindir_candidates():
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "postgresql"],
            check=True,
            capture_output=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        for candidate in _bindir_candidates():
            if (candidate / "initdb").exists():
                return candidate
    raise LocalPostgresError(
        "No PostgreSQL server binaries found (initdb, pg_ctl). Install PostgreSQL "
        "(Debian: apt-get install postgresql), set WARP_PG_BINDIR to their folder, "
        "or set WARP_DATABASE_URL to use a running server."
    )


def _bindir_candidates() -> list[Path]:
    found: list[Path] = []
    from warp_sync_pipeline.core.settings import load_settings

    configured = load_settings().pg_bindir
    if configured:
        found.append(Path(configured))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            found.append(Path(out.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    found.extend(Path(v) for v in versions)
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).resolve().parent)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As PostgreSQL binds: connections of the server's last life in TIME_WAIT do not keep it from its port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class ClusterRecord:
    data_dir: str
    socket_dir: str
    log_file: str
    port: int
    bindir: str
    run_as: str | None  # the OS user the server runs as when we are root


class LocalCluster:
    """One private cluster, described by `<state_dir>/<name>.json`."""

    def __init__(self, state_dir: Path, name: str = "postgres", *, fast_unsafe: bool = False) -> None:
        self.state_dir = state_dir
        self.name = name
        self.record_path = state_dir / f"{name}.json"
        # Tests throw their data away, so they trade durability for speed.
        self.fast_unsafe = fast_unsafe

    # -- public -----------------------------------------------------------------------------
    def ensure_running(self) -> str:
        """Start the cluster if needed (creating it the first time); return its admin URL."""
        record = self._load_or_create()
        if not self._is_running(record):
            self._start(record)
        return self.url(record, "postgres")

    def stop(self) -> bool:
        """Stop the server if it runs; returns whether it was running."""
        if not self.record_path.exists():
            return False
        record = self._load()
        if not self._is_running(record):
            return False
        self._pg_ctl(record, "stop", "-m", "fast", "-w", "-t", "60")
        return True

    def destroy(self) -> None:
        """Stop and delete the cluster's data (used by test runs, which keep nothing)."""
        if not self.record_path.exists():
            return
        record = self._load()
        with contextlib.suppress(LocalPostgresError, subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(Path(record.data_dir).parent, ignore_errors=True)
        self.record_path.unlink(missing_ok=True)

    def status(self) -> dict[str, object]:
        if not self.record_path.exists():
            return {"exists": False, "running": False}
        record = self._load()
        return {"exists": True, "running": self._is_running(record), **asdict(record)}

    @staticmethod
    def url(record: ClusterRecord, database: str) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{record.port}/{database}"

    def current_url(self, database: str) -> str:
        return self.url(self._load(), database)

    # -- internals --------------------------------------------------------------------------
    def _load(self) -> ClusterRecord:
        return ClusterRecord(**json.loads(self.record_path.read_text()))

    def _load_or_create(self) -> ClusterRecord:
        if self.record_path.exists():
            record = self._load()
            if (Path(record.data_dir) / "PG_VERSION").exists():
                return record
        return self._create()

    def _create(self) -> ClusterRecord:
        bindir = find_bindir()
        root = os.geteuid() == 0
        if root:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                    check=True,
                )
            # Outside the checkout: a checkout in a private home folder is unreadable to `postgres`.
            key = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            base = Path("/var/tmp/warp-sync") / f"{key}-{self.name}"
        else:
            base = self.state_dir / self.name
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True, mode=0o700)
        record = ClusterRecord(
            data_dir=str(base / "data"),
            socket_dir=str(base / "sock"),
            log_file=str(base / "server.log"),
            port=free_port(),
            bindir=str(bindir),
            run_as=SERVER_USER if root else None,
        )
        Path(record.socket_dir).mkdir(mode=0o700)
        if root:
            Path("/var/tmp/warp-sync").chmod(0o755)
            subprocess.run(["chown", "-R", f"{SERVER_USER}:", str(base)], check=True)
        self._run(
            record,
            [str(bindir / "initdb"), "-D", record.data_dir, "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
             "--no-instructions"],
        )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps(asdict(record), indent=2))
        return record

    def _start(self, record: ClusterRecord) -> None:
        if not port_is_free(record.port):
            record.port = free_port()
            self.record_path.write_text(json.dumps(asdict(record), indent=2))
        options = f"-c listen_addresses=127.0.0.1 -p {record.port} -k {record.socket_dir}"
        if self.fast_unsafe:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options += " -c max_connections=200"
        self._pg_ctl(record, "start", "-w", "-t", "60", "-l", record.log_file, "-o", options)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._is_running(record):
                return
            time.sleep(0.1)
        raise LocalPostgresError(f"PostgreSQL did not accept connections; see {record.log_file}")

    def _is_running(self, record: ClusterRecord) -> bool:
        try:
            conn = psycopg2.connect(
                host="127.0.0.1", port=record.port, user=SUPERUSER, dbname="postgres", connect_timeout=2
            )
        except psycopg2.OperationalError:
            return False
        # Make sure it is our cluster answering on that port, not someone else's.
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW data_directory")
                row = cur.fetchone()
            return row is not None and Path(row[0]).resolve() == Path(record.data_dir).resolve()
        except psycopg2.Error:
            return False
        finally:
            conn.close()

    def _pg_ctl(self, record: ClusterRecord, *args: str) -> None:
        self._run(record, [str(Path(record.bindir) / "pg_ctl"), "-D", record.data_dir, *args])

    @staticmethod
    def _run(record: ClusterRecord, argv: list[str]) -> None:
        tool = Path(argv[0]).name
        if record.run_as:
            argv = ["runuser", "-u", record.run_as, "--", *argv]
        # The server logs to its own file (-l), so capturing pg_ctl's output cannot hang on the daemon.
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd="/")
        if done.returncode != 0:
            raise LocalPostgresError(f"{tool} failed: {done.stdout.strip()}")


@contextlib.contextmanager
def throwaway_server(
    kind: str, *, fast_unsafe: bool = False, use_test_server: bool = True
) -> Iterator[tuple[str, str]]:
    """A PostgreSQL to make scratch databases on, for tests and benchmarks: yields (admin URL, description).

    The server WARP_TEST_DATABASE_URL names when it is set and `use_test_server` (the caller creates and drops
    databases of its own there), else a private cluster made for this process (`<state>/<kind>-<pid>`) and
    removed afterwards.
    """
    from warp_sync_pipeline.core.db import with_database
    from warp_sync_pipeline.core.settings import load_settings, state_dir

    external = load_settings().test_database_url if use_test_server else None
    if external:
        yield with_database(external, "postgres"), "WARP_TEST_DATABASE_URL server"
        return
    cluster = LocalCluster(state_dir() / f"{kind}-{os.getpid()}", f"{kind}-pg", fast_unsafe=fast_unsafe)
    try:
        yield cluster.ensure_running(), "private cluster, " + (
            "fsync off" if fast_unsafe else "fsync on, synchronous_commit on")
    finally:
        cluster.destroy()
        shutil.rmtree(cluster.state_dir, ignore_errors=True)


def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` on the server behind `admin_url` if it does not exist."""
    conn = _raw_connect(admin_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                # Two processes may race here; the loser sees one of these two errors.
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def _raw_connect(url: str) -> psycopg2.extensions.connection:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg2.connect(
        host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username, password=u.password,
        dbname=u.database or "postgres", connect_timeout=5,
    )
