"""The chart runs web, worker and beat, probes them and locks every container down."""

from __future__ import annotations

import pytest

from tests.test_helm_rendering import (
    SCENARIOS,
    container,
    one,
    pod_spec,
    render,
    render_scenario,
    workloads,
)


def test_cluster_mode_runs_the_celery_worker_and_exactly_one_beat():
    docs = render({"worker": {"replicaCount": 3, "concurrency": 8}})
    worker = one(docs, "Deployment", "worker")
    assert container(worker)["args"] == ["worker", "--concurrency", "8"]
    assert worker["spec"]["replicas"] == 3
    beat = one(docs, "Deployment", "beat")
    assert container(beat)["args"] == ["beat"]
    # Two schedulers would enqueue every periodic task twice.
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_extra_arguments_reach_worker_and_beat():
    docs = render(
        {
            "worker": {"extraArgs": ["--max-tasks-per-child", "100"]},
            "beat": {"extraArgs": ["--max-interval", "5"]},
        }
    )
    assert container(one(docs, "Deployment", "worker"))["args"][-2:] == [
        "--max-tasks-per-child",
        "100",
    ]
    assert container(one(docs, "Deployment", "beat"))["args"] == ["beat", "--max-interval", "5"]


def test_without_shared_state_there_is_no_worker_nor_beat():
    docs = render_scenario("single replica without Redis")
    components = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"] for doc in workloads(docs)
    }
    assert components == {"web", "migrate"}


def test_the_web_pods_are_probed_on_healthz_and_readyz():
    web = container(one(render(), "Deployment", "web"))
    assert web["args"] == ["web"]
    assert web["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert web["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # A slow start is not a dead process: liveness waits for the startup probe.
    assert web["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_service_ingress_and_service_monitor_reach_the_web_port():
    docs = render_scenario("production")
    web_labels = one(docs, "Deployment", "web")["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert all(web_labels[key] == value for key, value in service["spec"]["selector"].items())
    (rule,) = one(docs, "Ingress")["spec"]["rules"]
    assert rule["host"] == "llm.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": "http"},
    }
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "http",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "authorization": {
                "type": "Bearer",
                "credentials": {"name": "ai-gateway-metrics", "key": "token"},
            },
        }
    ]
    # The web pods ask for the token Prometheus sends.
    env = container(one(docs, "Deployment", "web"))["env"]
    [token] = [item for item in env if item["name"] == "GATEWAY_METRICS_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "ai-gateway-metrics", "key": "token"}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_container_runs_unprivileged_on_a_read_only_root(scenario):
    for workload in workloads(render_scenario(scenario)):
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        security = container(workload)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        # The only writable places: /tmp and the var directory, both emptyDirs.
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for mount in container(workload)["volumeMounts"]:
            if not mount.get("readOnly"):
                assert "emptyDir" in volumes[mount["name"]], mount


def test_the_image_reference_follows_tag_or_digest():
    assert (
        container(one(render(), "Deployment", "web"))["image"]
        == "registry.example.com/ai-gateway:0.1.0"
    )
    digest = "sha256:" + "0" * 64
    docs = render({"image": {"repository": "r.example/gw", "tag": "1.2.3", "digest": digest}})
    assert {container(w)["image"] for w in workloads(docs)} == {f"r.example/gw@{digest}"}
