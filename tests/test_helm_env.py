"""The chart sets only environment variables the gateway reads: no drift.

The variables the settings read are found in the source of
``gateway_project/settings.py`` (calls of ``env``, ``env_bool``, ``env_int``,
``env_float``, ``env_list``, and of any settings function that hands its
first argument to one of them); the image's entrypoint reads a few more
(``${NAME}`` in ``docker/entrypoint.sh``).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest
import yaml

from tests.processes import ROOT
from tests.test_helm_rendering import (
    CHART,
    SCENARIOS,
    container,
    env_of,
    one,
    render,
    render_scenario,
    workloads,
)

SETTINGS = ROOT / "gateway_project" / "settings.py"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
ENV_READERS = {"env", "env_bool", "env_int", "env_float", "env_list"}

# Values of the chart (the seed's gateway.client) that the settings do not
# read yet. Each must become a setting; then it leaves this list.
SETTINGS_STILL_TO_ADD: set[str] = set()


def first_arguments(tree: ast.AST, functions: set[str]) -> list[ast.expr]:
    """The first argument of every call, below ``tree``, of one of ``functions``."""
    return [
        call.args[0]
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in functions
        and call.args
    ]


def settings_variables() -> set[str]:
    """Every variable name that settings.py reads through the env helpers."""
    tree = ast.parse(SETTINGS.read_text(encoding="utf-8"))
    readers = set(ENV_READERS)
    # Helpers such as _required_secret(name) read `name` with env(name).
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.args.args:
            parameter = node.args.args[0].arg
            if any(
                isinstance(argument, ast.Name) and argument.id == parameter
                for argument in first_arguments(node, ENV_READERS)
            ):
                readers.add(node.name)
    return {
        argument.value
        for argument in first_arguments(tree, readers)
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str)
    }


def entrypoint_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", ENTRYPOINT.read_text(encoding="utf-8")))


def expanded_helpers(variables: dict[str, Any]) -> set[str]:
    """Variables that exist only to be expanded as $(NAME) in another value."""
    values = [value for value in variables.values() if isinstance(value, str)]
    return {name for name in variables if any(f"$({name})" in value for value in values)}


def configuration_variables(docs: list[dict[str, Any]]) -> set[str]:
    """The variables the rendered configuration file names (api_key_env, secret_env)."""
    config_maps = [
        doc for doc in docs if doc["kind"] == "ConfigMap" and "gateway.yaml" in doc["data"]
    ]
    if not config_maps:
        return set()
    text = yaml.safe_dump(yaml.safe_load(config_maps[0]["data"]["gateway.yaml"]))
    return set(re.findall(r"(?:api_key_env|secret_env): (\S+)", text))


def test_the_settings_parser_finds_what_settings_py_reads():
    found = settings_variables()
    # One of each way of reading, so the parser cannot silently find nothing.
    assert {
        "DJANGO_SECRET_KEY",  # through _required_secret()
        "DATABASE_URL",  # env()
        "DEBUG",  # env_bool()
        "GATEWAY_MAX_BODY_BYTES",  # env_int()
        "GATEWAY_UPSTREAM_READ_TIMEOUT",  # env_float()
        "ALLOWED_HOSTS",  # env_list()
    } <= found


def unread_variables(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per workload, the variables it is given that nothing reads."""
    read = settings_variables() | entrypoint_variables() | SETTINGS_STILL_TO_ADD
    unread = {}
    for workload in workloads(docs):
        variables = env_of(docs, workload)
        allowed = read | expanded_helpers(variables)
        if workload["kind"] == "Job":
            allowed |= configuration_variables(docs)
        extra = sorted(set(variables) - allowed)
        if extra:
            unread[workload["metadata"]["name"]] = extra
    return unread


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_variable_the_chart_sets_is_read_by_the_gateway(scenario):
    assert unread_variables(render_scenario(scenario)) == {}, (
        "the chart sets variables that neither gateway_project/settings.py nor "
        "docker/entrypoint.sh reads"
    )


def test_a_variable_nobody_reads_is_reported():
    docs = render({"gateway": {"extraEnv": {"GATEWAY_RETRYS": "3"}}})
    unread = unread_variables(docs)
    assert set(unread) == {
        "gw-ai-gateway",
        "gw-ai-gateway-worker",
        "gw-ai-gateway-beat",
        "gw-ai-gateway-migrate",
    }
    assert all(names == ["GATEWAY_RETRYS"] for names in unread.values())


def test_the_settings_still_to_add_are_not_read_yet():
    implemented = SETTINGS_STILL_TO_ADD & settings_variables()
    assert implemented == set(), (
        f"settings.py now reads {sorted(implemented)}: remove them from "
        "SETTINGS_STILL_TO_ADD in tests/test_helm_env.py"
    )


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_gateway_process_gets_production_mode_its_secrets_and_its_stores(scenario):
    docs = render_scenario(scenario)
    cluster = any(doc["metadata"]["name"].endswith("-worker") for doc in workloads(docs))
    for workload in workloads(docs):
        variables = env_of(docs, workload)
        assert variables["GATEWAY_ENV"] == "production"
        required = {"DJANGO_SECRET_KEY", "GATEWAY_ENCRYPTION_KEY", "DATABASE_URL"}
        assert required <= set(variables), workload["metadata"]["name"]
        assert ("REDIS_URL" in variables) == cluster, workload["metadata"]["name"]


def test_the_var_directory_setting_is_the_writable_mount():
    docs = render()
    for workload in workloads(docs):
        mounts = {
            mount["name"]: mount["mountPath"] for mount in container(workload)["volumeMounts"]
        }
        assert env_of(docs, workload)["GATEWAY_VAR_DIR"] == mounts["var"]


def test_the_seed_client_values_map_to_their_settings():
    docs = render(
        {
            "gateway": {
                "workers": 5,
                "maxBodyBytes": 1048576,
                "upstream": {"connectTimeout": 2.5, "poolSize": 64},
                "client": {
                    "initialPoolSize": 40,
                    "dropExcessRequests": True,
                    "enableLogging": False,
                    "enforceGovernanceHeader": False,
                },
                "defaultTeam": "lab",
                "extraEnv": {"GATEWAY_RETRIES": 4},
            }
        }
    )
    variables = env_of(docs, one(docs, "Deployment", "web"))
    assert {
        name: variables[name]
        for name in (
            "WEB_CONCURRENCY",
            "GATEWAY_MAX_BODY_BYTES",
            "GATEWAY_UPSTREAM_CONNECT_TIMEOUT",
            "GATEWAY_UPSTREAM_POOL_SIZE",
            "GATEWAY_INITIAL_POOL_SIZE",
            "GATEWAY_DROP_EXCESS_REQUESTS",
            "GATEWAY_ENABLE_LOGGING",
            "GATEWAY_ENFORCE_GOVERNANCE_HEADER",
            "GATEWAY_DEFAULT_TEAM",
            "GATEWAY_RETRIES",
        )
    } == {
        "WEB_CONCURRENCY": "5",
        "GATEWAY_MAX_BODY_BYTES": "1048576",
        "GATEWAY_UPSTREAM_CONNECT_TIMEOUT": "2.5",
        "GATEWAY_UPSTREAM_POOL_SIZE": "64",
        "GATEWAY_INITIAL_POOL_SIZE": "40",
        "GATEWAY_DROP_EXCESS_REQUESTS": "true",
        "GATEWAY_ENABLE_LOGGING": "false",
        "GATEWAY_ENFORCE_GOVERNANCE_HEADER": "false",
        "GATEWAY_DEFAULT_TEAM": "lab",
        "GATEWAY_RETRIES": "4",
    }


def test_allowed_hosts_name_the_ingress_hosts_the_service_and_the_pod_ip():
    docs = render(
        {
            "gateway": {"allowedHosts": ["gw.internal"]},
            "ingress": {
                "enabled": True,
                "hosts": [
                    {"host": "llm.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}
                ],
            },
        }
    )
    deployment = one(docs, "Deployment", "web")
    variables = env_of(docs, deployment)
    hosts = variables["ALLOWED_HOSTS"].split(",")
    assert {"gw.internal", "llm.example.com", "gw-ai-gateway.llm.svc.cluster.local"} <= set(hosts)
    # The kubelet's probes and Prometheus send the pod's IP as Host.
    assert "$(POD_IP)" in hosts
    assert variables["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    names = [entry["name"] for entry in container(deployment)["env"]]
    assert names.index("POD_IP") < names.index("ALLOWED_HOSTS"), "expanded only if defined first"


def test_the_configuration_sections_the_chart_accepts_are_those_apply_config_reads():
    tree = ast.parse((ROOT / "keys" / "declarative.py").read_text(encoding="utf-8"))
    (root_fields,) = [
        call.args[2]
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == "_Reader"
        and isinstance(call.args[1], ast.Constant)
        and call.args[1].value == "config"
    ]
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    config = schema["properties"]["gateway"]["properties"]["config"]
    assert set(config["properties"]) == set(ast.literal_eval(root_fields)), (
        "keys/declarative.py reads other top-level sections than "
        "helm/ai-gateway/values.schema.json (gateway.config) accepts"
    )


def documented_variables() -> set[str]:
    """Every variable named in backquotes in the README or docs/ (`NAME` or `NAME=…`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8") + "".join(
        path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))
    )
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:`|=)", text))


def test_every_setting_the_gateway_reads_is_documented():
    # The chart reaches any of them through gateway.extraEnv; an operator
    # can only set what the documentation names.
    undocumented = sorted(settings_variables() - documented_variables())
    assert undocumented == [], "document these settings in the README or docs/"
