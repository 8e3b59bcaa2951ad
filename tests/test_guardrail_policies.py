"""Guardrail policies are validated, audited and scoped like every governance rule."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from governance import services
from governance.models import GuardrailPolicy
from keys.services import ServiceError
from tests.audit_fixtures import build_world, new_events

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"detectors": {"emails": "redact"}}, "detectors"),
        ({"detectors": {"email": "delete"}}, "detectors"),
        ({"deny_patterns": [{"name": "x", "pattern": "(unclosed"}]}, "deny_patterns"),
        ({"deny_patterns": [{"pattern": "abc"}]}, "deny_patterns"),
        ({"deny_patterns": [{"name": "x", "pattern": "abc", "action": "warn"}]}, "deny_patterns"),
        ({"allow_patterns": ["[unclosed"]}, "allow_patterns"),
        ({"direction": "sideways"}, "direction"),
    ],
)
def test_a_policy_with_a_rule_that_cannot_work_is_refused(rules, field):
    with pytest.raises(ValidationError) as caught:
        services.guardrail_policy_create(name="bad", **rules)
    assert field in caught.value.message_dict
    assert not GuardrailPolicy.objects.exists()


def test_a_policy_without_an_owner_is_global_and_one_with_an_owner_is_scoped():
    world = build_world()
    everywhere = services.guardrail_policy_create(name="all", detectors={"secrets": "block"})
    team_only = services.guardrail_policy_create(
        name="team", owner=world.team, detectors={"email": "flag"}
    )
    assert everywhere.scope == ("global", 0) and everywhere.scope_label == "global"
    assert team_only.scope == ("team", world.team.id)


def test_policies_record_create_update_and_delete():
    world = build_world()
    with new_events() as created:
        policy = services.guardrail_policy_create(
            name="pii", owner=world.key, detectors={"personal_data": "redact"}
        )
    with new_events() as updated:
        services.guardrail_policy_update(policy=policy, detectors={"email": "block"})
    with new_events() as unchanged:
        services.guardrail_policy_update(policy=policy, detectors={"email": "block"})
    with new_events() as deleted:
        services.guardrail_policy_delete(policy=GuardrailPolicy.objects.get(pk=policy.pk))
    assert [e.action for e in created] == ["create"]
    assert created[0].after["detectors"] == {"personal_data": "redact"}
    assert [(e.before["detectors"], e.after["detectors"]) for e in updated] == [
        ({"personal_data": "redact"}, {"email": "block"})
    ]
    assert unchanged == []
    assert [(e.action, e.object_type) for e in deleted] == [
        ("delete", "governance.guardrailpolicy")
    ]


def test_a_policy_keeps_its_scope_when_changed():
    policy = services.guardrail_policy_create(name="all")
    with pytest.raises(ServiceError):
        services.guardrail_policy_update(policy=policy, team=None)
