"""Scaling and disruptions never drop a stream: HPA, PDB, preStop, grace period, spreading."""

from __future__ import annotations

from typing import Any

from tests.test_helm_rendering import (
    container,
    one,
    pod_spec,
    render,
    render_error,
    render_scenario,
)


def web_pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    return one(docs, "Deployment", "web")["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_the_hpa_scales_the_web_deployment_on_cpu_and_memory():
    docs = render_scenario("production")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": one(docs, "Deployment", "web")["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 30)
    targets = {
        metric["resource"]["name"]: metric["resource"]["target"]["averageUtilization"]
        for metric in hpa["spec"]["metrics"]
    }
    assert targets == {"cpu": 65, "memory": 80}


def test_the_hpa_scales_up_at_once_and_down_one_pod_at_a_time_after_a_pause():
    behavior = one(render({"autoscaling": {"enabled": True}}), "HorizontalPodAutoscaler")["spec"][
        "behavior"
    ]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["selectPolicy"] == "Max"
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]


def test_the_hpa_behaviour_comes_from_the_values():
    scale_down = {
        "stabilizationWindowSeconds": 900,
        "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
    }
    docs = render({"autoscaling": {"enabled": True, "behavior": {"scaleDown": scale_down}}})
    behavior = one(docs, "HorizontalPodAutoscaler")["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
    assert behavior["scaleDown"]["policies"] == scale_down["policies"]


def test_with_autoscaling_the_deployment_leaves_the_replica_count_to_the_hpa():
    assert "replicas" not in one(render_scenario("production"), "Deployment", "web")["spec"]
    docs = render({"replicaCount": 4})
    assert one(docs, "Deployment", "web")["spec"]["replicas"] == 4
    assert [doc for doc in docs if doc["kind"] == "HorizontalPodAutoscaler"] == []


def test_a_stopping_pod_pauses_then_has_time_for_the_longest_stream():
    docs = render()
    web = one(docs, "Deployment", "web")
    assert container(web)["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "10"]}}
    grace = pod_spec(web)["terminationGracePeriodSeconds"]
    # The pause, then the upstream's total timeout (600 s) for a stream started just before.
    assert grace >= 10 + 600


def test_pre_stop_and_grace_period_come_from_the_values():
    docs = render(
        {
            "terminationGracePeriodSeconds": 900,
            "lifecycle": {"preStop": {"exec": None, "sleep": {"seconds": 20}}},
        }
    )
    web = one(docs, "Deployment", "web")
    assert pod_spec(web)["terminationGracePeriodSeconds"] == 900
    assert container(web)["lifecycle"] == {"preStop": {"sleep": {"seconds": 20}}}


def test_a_second_handler_merged_into_the_default_one_is_refused():
    # Helm merges maps: the default exec would stay next to the new sleep.
    message = render_error({"lifecycle": {"preStop": {"sleep": {"seconds": 20}}}})
    assert "lifecycle.preStop has exec and sleep" in message
    message = render_error({"readinessProbe": {"tcpSocket": {"port": "http"}}})
    assert "readinessProbe has httpGet and tcpSocket" in message


def test_rolling_updates_start_new_pods_before_stopping_old_ones():
    strategy = one(render(), "Deployment", "web")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_web_replicas_prefer_distinct_nodes_by_default():
    docs = render()
    anti = pod_spec(one(docs, "Deployment", "web"))["affinity"]["podAntiAffinity"]
    (preferred,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    term = preferred["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # It repels this release's web pods, not the worker's, nor another release's.
    assert selects(term["labelSelector"], web_pod_labels(docs))
    worker = one(docs, "Deployment", "worker")["spec"]["template"]["metadata"]["labels"]
    assert not selects(term["labelSelector"], worker)
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "gw"


def test_the_production_example_requires_distinct_nodes_and_spreads_zones():
    docs = render_scenario("production")
    spec = pod_spec(one(docs, "Deployment", "web"))
    anti = spec["affinity"]["podAntiAffinity"]
    assert list(anti) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert selects(
        anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["labelSelector"],
        web_pod_labels(docs),
    )
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert selects(spread["labelSelector"], web_pod_labels(docs))


def test_the_affinity_can_be_removed():
    assert "affinity" not in pod_spec(one(render({"affinity": None}), "Deployment", "web"))


def test_the_disruption_budget_keeps_web_pods_serving_during_drains():
    docs = render()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert selects(pdb["spec"]["selector"], web_pod_labels(docs))
    # A pod that is not ready serves nothing; evicting it must not block a drain.
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_disruption_budget_takes_min_available_when_set():
    pdb = one(render_scenario("production"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in pdb["spec"]


def test_without_shared_state_only_one_replica_may_run():
    off = {"cluster": {"enabled": False}}
    message = "gateway.cluster.enabled=false keeps limits and budgets in each process"
    assert message in render_error({"gateway": off, "replicaCount": 2})
    assert message in render_error(
        {"gateway": off, "replicaCount": 1, "autoscaling": {"enabled": True}}
    )
    docs = render({"gateway": off, "replicaCount": 1})
    assert one(docs, "Deployment", "web")["spec"]["replicas"] == 1
