"""Guardrail policies in the configuration file: declared per level, exactly."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from governance.models import GuardrailPolicy
from keys.declarative import ConfigError, apply_config, export_config

pytestmark = pytest.mark.django_db

CONFIG = textwrap.dedent(
    """
    version: 1
    guardrails:
      - name: no-secrets
        detectors: {secrets: block}
    customers:
      - name: acme
        teams:
          - name: search
            guardrails:
              - name: pii
                direction: request
                detectors: {personal_data: redact, email: flag}
                allow_patterns: ['.*@acme\\.example']
                deny_patterns:
                  - {name: codename, pattern: '(?i)project orca', action: block}
                max_messages: 50
            virtual_keys:
              - name: search-prod
                guardrails:
                  - {name: answers, direction: response, detectors: {secrets: redact}}
    """
)


def test_declared_policies_are_created_at_their_level_and_applying_again_changes_nothing():
    apply_config(yaml.safe_load(CONFIG))
    policies = {p.name: p for p in GuardrailPolicy.objects.all()}
    assert policies["no-secrets"].scope == ("global", 0)
    assert policies["pii"].team.name == "search"
    assert policies["pii"].max_messages == 50
    assert policies["answers"].virtual_key.name == "search-prod"
    assert apply_config(yaml.safe_load(CONFIG)).is_noop


def test_the_export_holds_the_policies_and_applies_as_a_no_op():
    apply_config(yaml.safe_load(CONFIG))
    exported = export_config()
    assert [p["name"] for p in exported["guardrails"]] == ["no-secrets"]
    team = exported["customers"][0]["teams"][0]
    assert team["guardrails"][0]["detectors"] == {"personal_data": "redact", "email": "flag"}
    assert apply_config(exported).is_noop


def test_a_policy_left_out_of_a_declared_list_is_removed():
    apply_config(yaml.safe_load(CONFIG))
    document = yaml.safe_load(CONFIG)
    document["guardrails"] = []
    apply_config(document)
    assert not GuardrailPolicy.objects.filter(name="no-secrets").exists()
    assert GuardrailPolicy.objects.filter(name="pii").exists()


def test_an_unknown_detector_is_refused_and_nothing_is_applied():
    document = yaml.safe_load(CONFIG)
    document["guardrails"][0]["detectors"] = {"passwords": "block"}
    with pytest.raises(ConfigError, match="unknown detector"):
        apply_config(document)
    assert not GuardrailPolicy.objects.exists()
