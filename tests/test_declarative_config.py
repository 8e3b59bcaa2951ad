"""The configuration file: apply, export, apply again changes nothing."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from keys import crypto, tokens
from keys.declarative import ConfigError, apply_config, dump_yaml, export_config
from keys.models import ModelRoute, Provider, ProviderKey, VirtualKey

pytestmark = pytest.mark.django_db

DECLARED_KEY = "sk-gw-gitops01" + "A" * 40

CONFIG = textwrap.dedent(
    """
    version: 1
    providers:
      - name: openai
        kind: openai
        base_url: https://api.openai.example/v1/
        keys:
          - name: primary
            api_key_env: TEST_OPENAI_KEY
            weight: 3
          - name: secondary
            api_key_env: TEST_OPENAI_KEY_2
            active: false
    routes:
      - name: gpt-4o
        provider: openai
        model: gpt-4o-2024-08-06
    customers:
      - name: acme
        description: ACME Corp
        metadata: {cost_center: "42"}
        budgets:
          - {amount: "1000", period: 1M}
        teams:
          - name: search
            allowed_models: ["gpt-4o*", "openai/*"]
            max_concurrent_requests: 20
            budgets:
              - {amount: "12.50", period: 1d}
              - {amount: 100, period: 1w, calendar_aligned: false,
                 anchor: "2026-01-05T09:00:00+00:00"}
            rate_limits:
              - {metric: requests, limit: 600}
              - {metric: tokens, limit: 200000, window_seconds: 3600}
            virtual_keys:
              - name: search-prod
                secret_env: TEST_SEARCH_KEY
                expires_at: "2030-01-01T00:00:00+00:00"
                metadata: {owner: alice}
                allowed_ips: ["10.0.0.0/8"]
                rate_limits:
                  - {metric: requests, limit: 60}
              - name: search-dev
    teams:
      - name: lab
        description: no customer
    """
)


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-openai-secret-1234")
    monkeypatch.setenv("TEST_OPENAI_KEY_2", "sk-openai-secret-5678")
    monkeypatch.setenv("TEST_SEARCH_KEY", DECLARED_KEY)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return path


def test_applying_creates_everything_declared(config_file, capsys):
    call_command("apply_config", str(config_file))
    out = capsys.readouterr().out
    assert "15 created, 0 changed, 0 unchanged" in out
    assert "new secret for virtual key search-dev" in out
    key = ProviderKey.objects.get(name="primary")
    assert crypto.decrypt(key.encrypted_secret) == "sk-openai-secret-1234"
    assert key.weight == 3 and key.last_four == "1234" and key.secret_env == "TEST_OPENAI_KEY"
    assert ModelRoute.objects.get(name="gpt-4o").provider_model == "gpt-4o-2024-08-06"
    prod = VirtualKey.objects.get(name="search-prod")
    assert prod.secret_hash == tokens.hash_key(DECLARED_KEY)
    assert prod.team.customer.name == "acme"


def test_applying_twice_changes_nothing(config_file):
    call_command("apply_config", str(config_file))
    report = apply_config(yaml.safe_load(config_file.read_text()))
    assert report.is_noop
    assert len(report.unchanged) == 15


def test_an_export_applied_again_changes_nothing(config_file, tmp_path):
    call_command("apply_config", str(config_file))
    exported = tmp_path / "export.yaml"
    call_command("export_config", "--output", str(exported))
    report = apply_config(yaml.safe_load(exported.read_text()))
    assert report.is_noop, report.changed
    assert export_config() == yaml.safe_load(exported.read_text())


def test_budgets_and_limits_are_declared_per_level(config_file):
    from governance.models import Budget, RateLimit
    from keys.models import Team

    call_command("apply_config", str(config_file))
    team = Team.objects.get(name="search")
    assert team.allowed_models == ["gpt-4o*", "openai/*"]
    assert team.max_concurrent_requests == 20
    daily = Budget.objects.get(team=team, period="1d")
    assert daily.amount_micros == 12_500_000 and daily.calendar_aligned
    assert not Budget.objects.get(team=team, period="1w").calendar_aligned
    assert Budget.objects.get(customer__name="acme").amount_micros == 1_000_000_000
    assert RateLimit.objects.get(virtual_key__name="search-prod").limit == 60
    assert RateLimit.objects.filter(team=team).count() == 2


def test_a_removed_budget_is_deleted_and_a_changed_limit_updated(config_file):
    from governance.models import Budget, RateLimit

    call_command("apply_config", str(config_file))
    document = yaml.safe_load(config_file.read_text())
    team = document["customers"][0]["teams"][0]
    team["budgets"] = team["budgets"][:1]
    team["rate_limits"][0]["limit"] = 300
    report = apply_config(document)
    assert sorted(report.changed) == [
        "budget team search 1w (removed)",
        "rate limit team search requests/60s",
    ]
    assert Budget.objects.filter(team__name="search").count() == 1
    assert RateLimit.objects.get(team__name="search", metric="requests").limit == 300


def test_an_amount_with_more_than_six_decimals_is_refused(config_file):
    document = yaml.safe_load(config_file.read_text())
    document["customers"][0]["budgets"][0]["amount"] = "0.0000001"
    with pytest.raises(ConfigError, match="six decimal places"):
        apply_config(document)


def test_the_export_holds_no_secret(config_file):
    call_command("apply_config", str(config_file))
    text = dump_yaml(export_config())
    for secret in ("sk-openai-secret-1234", DECLARED_KEY, DECLARED_KEY[14:]):
        assert secret not in text
    assert "api_key_env: TEST_OPENAI_KEY" in text


def test_a_changed_environment_secret_is_applied(config_file, monkeypatch):
    call_command("apply_config", str(config_file))
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-openai-rotated-9999")
    report = apply_config(yaml.safe_load(config_file.read_text()))
    assert report.changed == ["provider key openai/primary"]
    assert ProviderKey.objects.get(name="primary").last_four == "9999"


def test_a_missing_environment_variable_is_an_error_and_nothing_is_written(
    config_file, monkeypatch
):
    monkeypatch.delenv("TEST_SEARCH_KEY")
    with pytest.raises(CommandError, match="TEST_SEARCH_KEY is not set"):
        call_command("apply_config", str(config_file))
    assert not ProviderKey.objects.exists()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"version": 2}, "version"),
        ({"providers": [{"name": "x"}]}, "'kind' is required"),
        (
            {"providers": [{"name": "x", "kind": "openai", "base_url": "u", "colour": 1}]},
            "unknown field",
        ),
        ({"routes": [{"name": "r", "provider": "ghost", "model": "m"}]}, "no provider named"),
        ({"providers": [{"name": "Bad Name", "kind": "openai", "base_url": "http://x"}]}, "name"),
        ({"providers": [{"name": "p", "kind": "carrier-pigeon", "base_url": "http://x"}]}, "kind"),
        (
            {"teams": [{"name": "t", "virtual_keys": [{"name": "k", "expires_at": "soon"}]}]},
            "ISO 8601",
        ),
        ({"teams": "lab"}, "wrong type"),
        ([1, 2], "mapping"),
    ],
)
def test_invalid_documents_are_refused_with_their_location(document, message):
    with pytest.raises(ConfigError, match=message):
        apply_config(document)


def test_a_declared_key_with_a_malformed_secret_is_refused(monkeypatch):
    monkeypatch.setenv("BAD_KEY", "not-a-gateway-key")
    with pytest.raises(ConfigError, match="virtual key must be"):
        apply_config(
            {"teams": [{"name": "t", "virtual_keys": [{"name": "k", "secret_env": "BAD_KEY"}]}]}
        )


def test_a_revoked_key_cannot_be_declared_active_again(config_file):
    call_command("apply_config", str(config_file))
    document = yaml.safe_load(config_file.read_text())
    document["customers"][0]["teams"][0]["virtual_keys"][1]["active"] = False
    assert apply_config(document).changed == ["virtual key search-dev"]
    document["customers"][0]["teams"][0]["virtual_keys"][1]["active"] = True
    with pytest.raises(ConfigError, match="revoked keys stay revoked"):
        apply_config(document)


def test_the_documented_example_applies(monkeypatch):
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    example = text.split("```yaml", 1)[1].split("```", 1)[0]
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_COMPAT_KEY", "ANTHROPIC_API_KEY", "OLLAMA_KEY"):
        monkeypatch.setenv(variable, f"secret-{variable.lower()}")
    monkeypatch.setenv("SEARCH_PROD_KEY", "sk-gw-searchpr" + "b" * 40)
    report = apply_config(yaml.safe_load(example))
    assert report.created and not report.changed


def test_provider_options_are_declared_exported_and_checked(monkeypatch):
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-secret-1234")
    document = {
        "version": 1,
        "providers": [
            {
                "name": "claude",
                "kind": "anthropic",
                "base_url": "https://api.anthropic.com/v1",
                "options": {"version": "2024-01-01"},
                "keys": [{"name": "main", "api_key_env": "TEST_ANTHROPIC_KEY"}],
            }
        ],
    }
    apply_config(document)
    assert Provider.objects.get(name="claude").options == {"version": "2024-01-01"}
    assert export_config()["providers"][0]["options"] == {"version": "2024-01-01"}
    document["providers"][0]["options"] = {"region": "us-east-1"}
    with pytest.raises(ConfigError) as caught:
        apply_config(document)
    assert "Unknown option 'region'" in str(caught.value)
    assert Provider.objects.get(name="claude").options == {"version": "2024-01-01"}
