"""The Helm chart lints strictly and every manifest it renders is valid Kubernetes.

This module also holds what the other ``test_helm_*`` modules share: the
pinned helm (installed by ``scripts/install-helm.sh``, never skipped: a
machine that cannot install it fails these tests), rendering with values, and
finding objects in the output. No database, no cluster: templates only.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.processes import ROOT

CHART = ROOT / "helm" / "ai-gateway"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
TOOLS = ROOT / ".tools"
RELEASE = "gw"
NAMESPACE = "llm"
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the
# newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())

# Values under which the chart must render valid manifests.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "production": {"files": [PRODUCTION_VALUES]},
    "single replica without Redis": {
        "values": {
            "replicaCount": 1,
            "gateway": {"cluster": {"enabled": False}},
            "podDisruptionBudget": {"enabled": False},
        }
    },
    "keyless requests, URLs, everything optional on": {
        "values": {
            "image": {"digest": "sha256:" + "ab" * 32},
            "imagePullSecrets": [{"name": "registry"}],
            "serviceAccount": {"create": False, "name": "gateway"},
            "gateway": {
                "client": {"enforceGovernanceHeader": False},
                "defaultTeam": "lab",
                "allowedHosts": ["gw.internal"],
            },
            "postgresql": {"url": "postgres://gateway@pg.db.svc:5432/gateway?sslmode=require"},
            "redis": {"url": "rediss://redis.cache.svc:6379/0"},
            "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 75},
            "ingress": {"enabled": True, "tls": [{"secretName": "tls", "hosts": ["a.example"]}]},
            "serviceMonitor": {
                "enabled": True,
                "namespace": "monitoring",
                "tokenSecret": {"name": "scrape", "key": "bearer"},
            },
            "nodeSelector": {"kubernetes.io/arch": "amd64"},
            "tolerations": [{"key": "llm", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "high",
            "podAnnotations": {"team": "platform"},
            "podLabels": {"cost-center": "4711"},
        }
    },
}


class HelmError(Exception):
    """helm refused to render; the message is its output."""


@functools.cache
def helm() -> str:
    """The pinned helm binary, installed on first use."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "install-helm.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/install-helm.sh failed:\n{result.stdout}{result.stderr}")
    return str(TOOLS / "bin" / "helm")


def run_helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@functools.cache
def _render(values_yaml: str, files: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(values_yaml)
    try:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        for name in (*files, handle.name):
            args += ["-f", name]
        result = run_helm(*args)
    finally:
        Path(handle.name).unlink()
    if result.returncode != 0:
        raise HelmError(result.stderr)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(
    values: dict[str, Any] | None = None, files: list[Path] | tuple[Path, ...] = ()
) -> list[dict[str, Any]]:
    """The chart's manifests for these values (a fresh copy each time)."""
    docs = _render(yaml.safe_dump(values or {}), tuple(str(name) for name in files))
    return json.loads(json.dumps(docs))


def render_scenario(name: str) -> list[dict[str, Any]]:
    scenario = SCENARIOS[name]
    return render(scenario.get("values"), scenario.get("files", ()))


def render_error(values: dict[str, Any]) -> str:
    """helm's complaint about values it must refuse."""
    with pytest.raises(HelmError) as refused:
        render(values)
    return str(refused.value)


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    """The single object of this kind (and ``app.kubernetes.io/component``)."""
    found = [
        doc
        for doc in objects(docs, kind)
        if component is None
        or doc["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Deployments and Jobs: everything that runs the gateway's image."""
    return [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(docs: list[dict[str, Any]], workload: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: name -> value, or the ``valueFrom`` mapping.

    Variables from a ConfigMap (``envFrom``) are resolved against the
    rendered ConfigMap, as the kubelet does; ``env`` entries win.
    """
    spec = container(workload)
    variables: dict[str, Any] = {}
    for source in spec.get("envFrom", []):
        name = source["configMapRef"]["name"]
        config_maps = [doc for doc in objects(docs, "ConfigMap") if doc["metadata"]["name"] == name]
        assert config_maps, f"envFrom names the ConfigMap {name}, which the chart does not render"
        variables.update(config_maps[0]["data"])
    for entry in spec.get("env", []):
        variables[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return variables


# --- the tests of this module ---------------------------------------------------------


def validate_service_monitors(docs: list[dict[str, Any]]) -> list[str]:
    """Errors of ServiceMonitors against prometheus-operator's CRD schema.

    A ServiceMonitor is a custom resource, outside kubernetes-validate's
    schemas; the npm package @kubernetes-models/prometheus-operator (installed
    next to helm) carries validators compiled from the CRD.
    """
    module = "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor"
    script = f"""
import {{ ServiceMonitor }} from "{module}";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const errors = [];
for (const doc of JSON.parse(input)) {{
  try {{ new ServiceMonitor(doc).validate(); }} catch (error) {{ errors.push(error.message); }}
}}
console.log(JSON.stringify(errors));
"""
    helm()  # installs the validator too
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        cwd=TOOLS / "node",
        input=json.dumps(docs),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def schema_errors(docs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    monitors = [doc for doc in docs if doc["kind"] == "ServiceMonitor"]
    errors += validate_service_monitors(monitors) if monitors else []
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version})"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            errors.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


@pytest.mark.parametrize("values_file", [None, PRODUCTION_VALUES], ids=["default", "production"])
def test_the_chart_lints_strictly(values_file):
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values_file)] if values_file else [])
    result = run_helm(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(scenario, version):
    docs = render_scenario(scenario)
    assert docs
    assert schema_errors(docs, version) == []


def test_the_production_example_renders_every_kind_of_object():
    kinds = sorted({doc["kind"] for doc in render_scenario("production")})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "Job",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_the_validation_catches_a_misspelled_field_and_a_wrong_type():
    docs = render_scenario("production")
    deployment = one(docs, "Deployment", "web")
    container(deployment)["imagePullPolicyy"] = "Always"
    monitor = one(docs, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "every thirty seconds"

    errors = schema_errors([deployment, monitor], KUBERNETES_VERSIONS[-1])

    assert len(errors) == 2
    assert any("imagePullPolicyy" in error for error in errors)
    assert any("interval" in error for error in errors)


def test_a_service_monitor_without_a_token_is_refused():
    error = render_error({"serviceMonitor": {"enabled": True}})
    assert "serviceMonitor.tokenSecret.name" in error


def test_values_outside_the_schema_are_refused():
    assert "allowedHosts" in render_error({"gateway": {"allowedHosts": ["*"]}})
    assert "replicaCount" in render_error({"replicaCount": 0})
    assert "logLevel" in render_error({"gateway": {"logLevel": "LOUD"}})


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_install_notes_render(scenario):
    # `helm template` leaves NOTES.txt out; a client-side dry run renders it.
    values = SCENARIOS[scenario]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump(values.get("values", {}), handle)
        handle.flush()
        files = [str(name) for name in values.get("files", ())] + [handle.name]
        args = ["install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client"]
        result = run_helm(*args, *(arg for name in files for arg in ("-f", name)))
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("\nNOTES:\n", 1)[1]
    assert "createsuperuser" in notes
    assert "(DJANGO_SECRET_KEY)" in notes
