"""The wheel, installed non-editable into a fresh virtualenv and run from a folder outside the checkout, as the
container image runs it: the CLI answers, `warp-sync db upgrade` migrates a database from the migrations the wheel
carries, Dagster loads the definitions, and the receiver serves under gunicorn.

The fresh virtualenv borrows the suite's installed dependencies through a `.pth` line (installing Dagster and pandas
again would cost a minute and prove nothing about our packaging); the editable install of warp-sync there is not
active in it, since `.pth` files of an added path are not read. Each check asserts the code ran from the wheel.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests import REPO
from tests.plugins.signing import SECRET
from warp_sync_pipeline.devstack.localpg import free_port

# What the build reads; the rest of the checkout (the virtualenv, state, git) is left behind.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "sql", "warp_sync_pipeline", "webhook_receiver",
           "hubspot_sandbox")


@dataclass(frozen=True)
class FreshInstall:
    python: Path
    bin: Path
    site_packages: Path
    workdir: Path  # outside the checkout, where every command runs

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=self.workdir, env=_clean_env(env), capture_output=True, text=True,
                              timeout=timeout)


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A shell with none of warp-sync's or Dagster's settings, plus `extra`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "DAGSTER_", "HUBSPOT_", "SMTP_"))}
    return {**kept, **(extra or {})}


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FreshInstall]:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (root / "dist").glob("warp_sync-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                                "-q", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    workdir = root / "elsewhere"
    workdir.mkdir()
    yield FreshInstall(venv / "bin" / "python", venv / "bin", site, workdir)


def test_the_installed_package_is_the_wheel_and_carries_its_data(fresh_install: FreshInstall) -> None:
    done = fresh_install.run(str(fresh_install.python), "-c", (
        "import warp_sync_pipeline, webhook_receiver, hubspot_sandbox\n"
        "from warp_sync_pipeline.core.migrations import discover\n"
        "from warp_sync_pipeline.instance import TEMPLATE\n"
        "print(warp_sync_pipeline.__file__, webhook_receiver.__file__, hubspot_sandbox.__file__, TEMPLATE)\n"
        "print(len(discover()), discover()[0].path)\n"))
    assert done.returncode == 0, done.stderr
    files, migrations = done.stdout.splitlines()
    for path in files.split():
        assert Path(path).is_relative_to(fresh_install.site_packages) and Path(path).exists(), path
    count, first = migrations.split()
    assert int(count) == len(list((REPO / "sql").glob("[0-9][0-9][0-9]_*.sql")))
    assert Path(first).is_relative_to(fresh_install.site_packages)


def test_the_cli_answers_and_upgrades_a_database_outside_the_checkout(
    fresh_install: FreshInstall, empty_database_url: str,
) -> None:
    helped = fresh_install.run(str(fresh_install.bin / "warp-sync"), "--help")
    assert helped.returncode == 0 and "db" in helped.stdout, helped.stderr
    env = {"WARP_DATABASE_URL": empty_database_url}
    for _ in range(2):  # and again: nothing left to apply
        upgraded = fresh_install.run(str(fresh_install.bin / "warp-sync"), "db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    engine = sa.create_engine(empty_database_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).has_table("customers")
            assert sa.inspect(conn).has_table("hubspot_reconcile_watermark")  # the last migration's
    finally:
        engine.dispose()
    assert not (fresh_install.workdir / "sql").exists() and list(fresh_install.workdir.iterdir()) in ([], [
        fresh_install.workdir / ".warp-sync"])


def test_dagster_loads_the_definitions_from_the_wheel(fresh_install: FreshInstall) -> None:
    """As the user-code deployment loads them: by module (the location name is the workspace's business)."""
    done = fresh_install.run(str(fresh_install.python), "-m", "dagster", "definitions", "validate", "-m",
                             "warp_sync_pipeline.definitions", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "All code locations passed validation" in done.stdout + done.stderr


@pytest.mark.parametrize("pool", ["webhooks", "admin"])
def test_the_receiver_pools_serve_from_the_wheel_as_their_manifests_start_them(
    fresh_install: FreshInstall, empty_database_url: str, pool: str,
) -> None:
    """Each pool's container command and environment from its Deployment (deploy/kubernetes/receiver), run from
    the wheel: liveness without the database, readiness with it, the OpenAPI document from package data and
    /metrics summed over the workers in the folder the manifest gives."""
    [container] = yaml.safe_load((REPO / "deploy" / "kubernetes" / "receiver" / f"deployment-{pool}.yaml").read_text())[
        "spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "gunicorn"
    port = free_port()
    local = {"--bind": f"127.0.0.1:{port}", "--control-socket": str(fresh_install.workdir / f"{pool}.ctl")}
    options = [f"{name}={local[name]}" if (name := arg.split("=", 1)[0]) in local else arg
               for arg in container["command"][1:]]
    metrics_dir = fresh_install.workdir / f"metrics-{pool}"
    env = {**{item["name"]: item["value"] for item in container["env"]}, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "WARP_DATABASE_URL": empty_database_url, "HUBSPOT_CLIENT_SECRET": SECRET}
    assert fresh_install.run(str(fresh_install.bin / "warp-sync"), "db", "upgrade", env=env).returncode == 0
    proc = subprocess.Popen([str(fresh_install.python), "-m", "gunicorn", *options], cwd=fresh_install.workdir,
                            env=_clean_env(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        answers = _get_when_up(port, proc, "/livez", "/healthz", "/openapi.json", "/metrics")
        assert answers == {"/livez": 200, "/healthz": 200, "/openapi.json": 200, "/metrics": 200}
        assert any(metrics_dir.iterdir())  # the workers write their figures where the manifest says
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        if proc.stderr:
            proc.stderr.close()


def test_the_packaged_dg_config_says_what_the_checkouts_does() -> None:
    """Two copies of three values: the package's dg.toml (the loader's, found from the package upwards) and the
    checkout's pyproject.toml [tool.dg] (the `dg` CLI's at the root)."""
    packaged = tomllib.loads((REPO / "warp_sync_pipeline" / "dg.toml").read_text())
    checkout = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    assert packaged == checkout


def _get_when_up(port: int, proc: subprocess.Popen, *paths: str) -> dict[str, int]:
    deadline = time.monotonic() + 30
    while True:
        try:
            answers = {}
            for path in paths:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", path)
                answers[path] = conn.getresponse().status
                conn.close()
            return answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stderr = proc.stderr.read().decode()[-3000:] if proc.stderr else ""
                raise AssertionError(f"gunicorn did not start: {stderr}") from None
            time.sleep(0.2)
