"""The hook Job migrates and applies the values' configuration before any new pod starts."""

from __future__ import annotations

from typing import Any

import yaml

from tests.test_helm_rendering import (
    PRODUCTION_VALUES,
    container,
    env_of,
    one,
    pod_spec,
    render,
    render_scenario,
)

HOOK = "helm.sh/hook"
WEIGHT = "helm.sh/hook-weight"
DELETE_POLICY = "helm.sh/hook-delete-policy"


def hooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if HOOK in doc["metadata"].get("annotations", {})]


def test_the_job_runs_before_install_and_before_every_upgrade():
    job = one(render(), "Job")
    assert job["metadata"]["annotations"][HOOK] == "pre-install,pre-upgrade"
    assert container(job)["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] == "Never"


def test_what_the_job_needs_exists_before_it_in_hook_weight_order():
    docs = render_scenario("production")
    ordered = sorted(hooks(docs), key=lambda doc: int(doc["metadata"]["annotations"][WEIGHT]))
    assert [(doc["kind"], doc["metadata"]["annotations"][WEIGHT]) for doc in ordered] == [
        ("ServiceAccount", "-20"),
        ("ConfigMap", "-10"),
        ("Job", "0"),
    ]
    for doc in ordered:
        assert doc["metadata"]["annotations"][HOOK] == "pre-install,pre-upgrade"
    service_account, config_map, job = ordered
    # On a first install the release's own objects do not exist yet: the Job
    # uses only hook objects.
    assert pod_spec(job)["serviceAccountName"] == service_account["metadata"]["name"]
    volumes = {volume["name"]: volume for volume in pod_spec(job)["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]


def test_hook_objects_are_replaced_on_each_run_and_removed_once_it_succeeded():
    for doc in hooks(render_scenario("production")):
        policy = doc["metadata"]["annotations"][DELETE_POLICY].split(",")
        assert sorted(policy) == ["before-hook-creation", "hook-succeeded"]


def test_the_job_applies_exactly_the_configuration_of_the_values():
    docs = render_scenario("production")
    job = one(docs, "Job")
    config_map = one(hooks(docs), "ConfigMap")
    applied = yaml.safe_load(config_map["data"]["gateway.yaml"])
    values = yaml.safe_load(PRODUCTION_VALUES.read_text(encoding="utf-8"))
    assert applied == values["gateway"]["config"]
    path = env_of(docs, job)["GATEWAY_CONFIG"]
    (mount,) = [m for m in container(job)["volumeMounts"] if m["name"] == "config"]
    assert path == f"{mount['mountPath']}/gateway.yaml"
    assert mount["readOnly"] is True


def test_without_a_configuration_the_job_only_migrates():
    docs = render()
    job = one(docs, "Job")
    assert "GATEWAY_CONFIG" not in env_of(docs, job)
    assert [doc["kind"] for doc in hooks(docs)] == ["ServiceAccount", "Job"]


def test_with_an_existing_service_account_the_job_uses_it():
    docs = render({"serviceAccount": {"create": False, "name": "gateway-identity"}})
    assert [doc["kind"] for doc in hooks(docs)] == ["Job"]
    assert pod_spec(one(docs, "Job"))["serviceAccountName"] == "gateway-identity"
    assert pod_spec(one(docs, "Deployment", "web"))["serviceAccountName"] == "gateway-identity"


def test_the_job_is_bounded_in_retries_and_time():
    spec = one(render(), "Job")["spec"]
    assert spec["backoffLimit"] == 1
    assert spec["activeDeadlineSeconds"] == 900


def test_the_running_pods_are_not_hooks():
    for doc in render_scenario("production"):
        if doc["kind"] in ("Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"):
            assert HOOK not in doc["metadata"].get("annotations", {})


# --- the settings' checksum rolls the pods ------------------------------------------------


def checksums(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["annotations"][
            "checksum/config"
        ]
        for doc in docs
        if doc["kind"] == "Deployment"
    }


def test_every_deployment_carries_the_same_settings_checksum():
    sums = checksums(render())
    assert set(sums) == {"gw-ai-gateway", "gw-ai-gateway-worker", "gw-ai-gateway-beat"}
    assert len(set(sums.values())) == 1
    (value,) = set(sums.values())
    assert len(value) == 64


def test_a_changed_setting_changes_the_checksum_and_so_rolls_the_pods():
    before = checksums(render())
    assert checksums(render({"gateway": {"logLevel": "DEBUG"}})) != before
    assert checksums(render({"gateway": {"client": {"dropExcessRequests": True}}})) != before
    assert checksums(render({"gateway": {"extraEnv": {"GATEWAY_RETRIES": "5"}}})) != before


def test_a_value_that_is_not_a_setting_leaves_the_checksum_alone():
    before = checksums(render())
    assert checksums(render({"replicaCount": 5, "worker": {"replicaCount": 3}})) == before
