"""The values file for Dagster's Helm chart, checked offline: every key against the hand-kept list of the pinned
chart's keys (a misspelt key is silently ignored by Helm where the chart's schema allows extra keys), and the
settings that must say what the rest of warp-sync says: the run queue and run monitoring as the instance template,
the location name as the workspace, the image as the manifests, the pin as pyproject.toml."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import pytest
import yaml

from tests import REPO
from tests.packaging.test_kubernetes import IMAGE, IMAGE_TAG
from warp_sync_pipeline.instance import TEMPLATE
from warp_sync_pipeline.runs import CODE_LOCATION

CHART_DIR = REPO / "deploy" / "kubernetes" / "dagster"
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def _dagster_pin() -> str:
    [pin] = re.findall(r'"dagster==([\d.]+)"', (REPO / "pyproject.toml").read_text())
    return pin


def _allowed() -> tuple[set[str], tuple[str, ...]]:
    [keys_file] = CHART_DIR.glob("chart-keys-*.txt")
    assert keys_file.name == f"chart-keys-{_dagster_pin()}.txt", "the list is for the chart of our Dagster pin"
    lines = [line.strip() for line in keys_file.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    exact = {line for line in lines if not line.endswith(".*")}
    free = tuple(line[:-2] for line in lines if line.endswith(".*"))
    return exact, free


def _paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every leaf's dotted path (list items as `[*]`); an empty map or list is a leaf of its own."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _paths(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list) and node:
        for item in node:
            yield from _paths(item, f"{prefix}[*]")
    else:
        yield prefix


def unknown_keys(values: dict[str, Any]) -> list[str]:
    exact, free = _allowed()

    def known(path: str) -> bool:
        if path in exact:
            return True
        return any(path == root or path.startswith((f"{root}.", f"{root}[")) for root in free)

    return sorted({path for path in _paths(values) if not known(path)})


def test_every_key_of_the_values_is_a_key_of_the_pinned_chart() -> None:
    assert unknown_keys(VALUES) == []


@pytest.mark.parametrize("misspelt", [
    "dagsterWebserver.replicas",  # replicaCount
    "runLauncher.config.k8sRunLauncher.runK8sConfig.jobSpec",  # jobSpecConfig
    "postgresql.postgresqlSchema",  # postgresqlScheme
    "dagsterDaemon.runMonitoring.maxResumeAttempts",  # maxResumeRunAttempts (the chart's schema lets it through)
])
def test_a_misspelt_key_is_found(misspelt: str) -> None:
    values = copy.deepcopy(VALUES)
    *parents, leaf = misspelt.split(".")
    node = values
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = 1
    assert unknown_keys(values) == [misspelt]


def test_the_chart_and_its_images_are_pinned_to_our_dagster() -> None:
    pin = _dagster_pin()
    assert version("dagster") == pin
    assert f"--version {pin}" in (CHART_DIR / "values.yaml").read_text()
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert VALUES[component]["image"]["tag"] == pin, component


def test_the_code_location_keeps_its_name_and_runs_our_image() -> None:
    [server] = VALUES["dagsterWebserver"]["workspace"]["servers"]
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    assert server["name"] == CODE_LOCATION
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", deployment["name"]), "a Service name: a DNS label"
    assert server["host"] == deployment["name"] and server["port"] == deployment["port"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == "warp_sync_pipeline.definitions"
    assert args[args.index("--location-name") + 1] == CODE_LOCATION
    assert deployment["image"]["repository"] == IMAGE and deployment["image"]["tag"] == IMAGE_TAG
    assert version("warp-sync") == IMAGE_TAG
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # run pods get its image and secrets


def test_dagster_storage_is_the_external_postgresql_through_psycopg2() -> None:
    postgres = VALUES["postgresql"]
    assert postgres["enabled"] is False and VALUES["generatePostgresqlPasswordSecret"] is False
    assert postgres["postgresqlScheme"] == "postgresql+psycopg2"  # the SQLAlchemy 2.1 pitfall
    assert yaml.safe_load(TEMPLATE.read_text())["storage"]["postgres"]["postgres_db"]["scheme"] == \
        postgres["postgresqlScheme"]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_run_queue_and_run_monitoring_are_the_instance_templates() -> None:
    """One queue, one set of limits: the chart's and dagster.yaml's say the same (a local stack and the cluster
    must never disagree on "one drain at a time")."""
    instance = yaml.safe_load(TEMPLATE.read_text())
    daemon = VALUES["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert daemon["runCoordinator"]["type"] == instance["run_coordinator"]["class"]
    assert queued["maxConcurrentRuns"] == instance["run_coordinator"]["config"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == instance["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {_snake(key): value for key, value in daemon["runMonitoring"].items()} == instance["run_monitoring"]
    assert instance["run_monitoring"]["max_resume_run_attempts"] == 0
    assert VALUES["additionalInstanceConfig"]["freshness"] == instance["freshness"]
    assert VALUES["telemetry"]["enabled"] is instance["telemetry"]["enabled"] is False


def test_run_pods_keep_frames_on_an_emptydir_as_large_as_the_largest_request() -> None:
    import json

    from warp_sync_pipeline.runs import BULK_RUN_POD, K8S_CONFIG_TAG

    launcher = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    # The code server and run pods load the instance, so our image carries the launcher (a dependency, pinned).
    from dagster_k8s import K8sRunLauncher  # noqa: F401
    assert version("dagster-k8s") == version("dagster-postgres")
    [volume] = launcher["volumes"]
    [mount] = launcher["volumeMounts"]
    assert mount["name"] == volume["name"] and mount["mountPath"] == f"{VALUES['global']['dagsterHome']}/storage"
    requested = json.loads(BULK_RUN_POD[K8S_CONFIG_TAG])["container_config"]["resources"]["requests"]
    assert volume["emptyDir"]["sizeLimit"] == requested["ephemeral-storage"]
    assert launcher["runK8sConfig"]["jobSpecConfig"]["ttlSecondsAfterFinished"] > 0
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"DAGSTER_HOME={VALUES['global']['dagsterHome']}" in dockerfile
