"""Secrets reach the pods by reference only: the chart never holds a secret's value."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.test_helm_rendering import (
    SCENARIOS,
    container,
    env_of,
    one,
    render,
    render_error,
    render_scenario,
    workloads,
)

SECRET_SETTINGS = ("DJANGO_SECRET_KEY", "GATEWAY_ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL")


def secret_ref(name: str, key: str) -> dict:
    return {"secretKeyRef": {"name": name, "key": key}}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_chart_creates_no_secret(scenario):
    assert [doc for doc in render_scenario(scenario) if doc["kind"] == "Secret"] == []


def test_every_process_takes_its_secrets_from_the_named_secrets():
    docs = render(
        {
            "gateway": {
                "secretKeySecret": {"name": "django", "key": "secret"},
                "encryptionKeySecret": {"name": "vault-gw", "key": "fernet"},
            },
            "postgresql": {"existingSecret": {"name": "pg", "key": "uri"}},
            "redis": {"existingSecret": {"name": "cache", "key": "uri"}},
        }
    )
    assert len(workloads(docs)) == 4
    for workload in workloads(docs):
        variables = env_of(docs, workload)
        assert variables["DJANGO_SECRET_KEY"] == secret_ref("django", "secret")
        assert variables["GATEWAY_ENCRYPTION_KEY"] == secret_ref("vault-gw", "fernet")
        assert variables["DATABASE_URL"] == secret_ref("pg", "uri")
        assert variables["REDIS_URL"] == secret_ref("cache", "uri")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_config_map_carries_a_secret_setting(scenario):
    for config_map in (doc for doc in render_scenario(scenario) if doc["kind"] == "ConfigMap"):
        assert not set(SECRET_SETTINGS) & set(config_map["data"])


@pytest.mark.parametrize(
    ("store", "url"),
    [
        ("postgresql", "postgres://gateway:hunter2@pg:5432/gateway"),
        ("postgresql", "postgres://pg:5432/gateway?sslmode=require&password=hunter2"),
        ("redis", "redis://:hunter2@redis:6379/0"),
        ("redis", "rediss://default:hunter2@redis:6380/0"),
    ],
)
def test_a_store_url_with_a_password_is_refused(store, url):
    message = render_error({store: {"url": url}})
    assert f"{store}.url carries a password" in message
    assert "hunter2" not in message


def test_a_store_url_without_a_password_is_used_as_it_is():
    docs = render({"postgresql": {"url": "postgres://gateway@pg:5432/gateway?sslmode=verify-full"}})
    variables = env_of(docs, one(docs, "Deployment", "web"))
    assert variables["DATABASE_URL"] == "postgres://gateway@pg:5432/gateway?sslmode=verify-full"


def test_a_store_with_neither_url_nor_secret_is_refused():
    message = render_error({"redis": {"url": "", "existingSecret": {"name": "", "key": "url"}}})
    assert "REDIS_URL: set redis.url or redis.existingSecret.name" in message


def with_config(config: dict, config_secrets: list | None = None) -> dict:
    return {"gateway": {"config": {"version": 1, **config}, "configSecrets": config_secrets or []}}


PROVIDER = {"name": "openai", "kind": "openai", "base_url": "https://api.openai.com/v1"}


def test_a_provider_key_written_into_the_configuration_is_refused():
    values = with_config({"providers": [{**PROVIDER, "keys": [{"name": "k", "api_key": "sk-x"}]}]})
    message = render_error(values)
    assert "gateway.config.providers[0].keys[0]: api_key would put a provider key" in message


def test_a_variable_the_configuration_names_must_come_from_a_secret():
    keys = [{"name": "k", "api_key_env": "OPENAI_API_KEY"}]
    message = render_error(with_config({"providers": [{**PROVIDER, "keys": keys}]}))
    assert "api_key_env OPENAI_API_KEY is not in gateway.configSecrets" in message

    team = {"name": "search", "virtual_keys": [{"name": "prod", "secret_env": "SEARCH_KEY"}]}
    message = render_error(with_config({"customers": [{"name": "acme", "teams": [team]}]}))
    assert "customers[0].teams[0].virtual_keys[0]: secret_env SEARCH_KEY is not" in message


def test_a_declared_virtual_key_needs_its_secret_from_a_secret():
    # apply_config would print a generated secret into the Job's logs.
    team = {"name": "lab", "virtual_keys": [{"name": "sandbox"}]}
    message = render_error(with_config({"teams": [team]}))
    assert "gateway.config.teams[0].virtual_keys[0]: a virtual key declared in the chart" in message
    # A revoked key has no secret to hand out.
    revoked = {"name": "lab", "virtual_keys": [{"name": "old", "active": False}]}
    render(with_config({"teams": [revoked]}))


def test_configuration_secrets_go_to_the_configuration_job_only():
    docs = render_scenario("production")
    job = one(docs, "Job")
    variables = env_of(docs, job)
    assert variables["OPENAI_API_KEY"] == secret_ref("llm-provider-keys", "openai")
    assert variables["SEARCH_PROD_KEY"] == secret_ref("gateway-virtual-keys", "search-prod")
    for workload in workloads(docs):
        if workload is not job:
            assert "OPENAI_API_KEY" not in env_of(docs, workload)


@pytest.mark.parametrize("name", [*SECRET_SETTINGS, "ALLOWED_HOSTS", "LOG_LEVEL"])
def test_extra_env_cannot_replace_what_the_chart_sets(name):
    assert f"gateway.extraEnv.{name}" in render_error({"gateway": {"extraEnv": {name: "x"}}})


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_secret_settings_are_references_or_urls_without_a_password(scenario):
    docs = render_scenario(scenario)
    for workload in workloads(docs):
        for entry in container(workload).get("env", []):
            if entry["name"] in ("DJANGO_SECRET_KEY", "GATEWAY_ENCRYPTION_KEY"):
                assert set(entry) == {"name", "valueFrom"}
            elif entry["name"] in SECRET_SETTINGS and "value" in entry:
                url = urlsplit(entry["value"])
                assert url.password is None
                assert "password" not in parse_qs(url.query)
