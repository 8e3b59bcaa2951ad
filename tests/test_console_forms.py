"""Console forms change things through the services: one audit event each, errors on the form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from governance.models import Budget, ModelPrice
from keys import tokens
from keys.models import ModelRoute, Provider, ProviderKey, Team, VirtualKey
from tests.audit_fixtures import new_events

pytestmark = pytest.mark.django_db


def test_creating_a_team_writes_one_audit_event(console, who):
    with new_events() as events:
        response = who.admin.post(
            reverse("keys:teams_new"),
            {
                "name": "growth",
                "customer": console.customer.pk,
                "allowed_models": "gpt-4o, claude*",
            },
        )
    team = Team.objects.get(name="growth")
    assert response.status_code == 302
    assert response["Location"] == reverse("keys:teams_edit", args=[team.pk])
    assert team.customer == console.customer
    assert team.allowed_models == ["gpt-4o", "claude*"]
    assert [(e.action, e.object_repr) for e in events] == [("create", "growth")]
    assert events[0].actor_name == "root"


def test_a_model_validation_error_shows_on_its_field_and_changes_nothing(console, who):
    with new_events() as events:
        bad = who.admin.post(reverse("keys:teams_new"), {"name": "Not A Slug"})
        taken = who.admin.post(reverse("keys:teams_new"), {"name": "search"})
    assert bad.status_code == 400
    assert "Use 1 to 63 lowercase letters" in str(bad.context["form"].errors["name"])
    assert taken.status_code == 400
    assert "already exists" in str(taken.context["form"].errors["name"])
    assert events == []


def test_editing_a_team_writes_one_event_and_nothing_when_unchanged(console, who):
    url = reverse("keys:teams_edit", args=[console.team.pk])
    data = {"customer": console.customer.pk, "description": "search engine", "allowed_models": ""}
    with new_events() as events:
        who.admin.post(url, data)
        who.admin.post(url, data)
    assert [e.action for e in events] == ["update"]
    console.team.refresh_from_db()
    assert console.team.description == "search engine"


def test_a_new_key_shows_its_secret_once(console, who):
    with new_events() as events:
        response = who.manager.post(
            reverse("keys:key_new"), {"name": "search-batch", "team": console.team.pk}
        )
    key = VirtualKey.objects.get(name="search-batch")
    secret = response.context["secret"]
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert secret in response.content.decode()
    assert tokens.hash_key(secret) == key.secret_hash
    assert [(e.action, e.object_repr) for e in events] == [("create", str(key))]
    for url in (reverse("keys:key_detail", args=[key.pk]), reverse("keys:key_list")):
        assert secret not in who.manager.get(url).content.decode()


def test_a_team_manager_cannot_create_a_key_for_another_team(console, who):
    with new_events() as events:
        response = who.manager.post(
            reverse("keys:key_new"), {"name": "sneaky", "team": console.other_team.pk}
        )
    assert response.status_code == 400
    assert "team" in response.context["form"].errors
    assert not VirtualKey.objects.filter(name="sneaky").exists()
    assert events == []


def test_revoking_a_key_writes_one_event_and_refuses_further_changes(console, who):
    url = reverse("keys:key_revoke", args=[console.key.pk])
    assert who.viewer.post(url).status_code == 403
    assert (
        who.manager.post(reverse("keys:key_revoke", args=[console.other_key.pk])).status_code == 404
    )
    with new_events() as events:
        assert who.manager.post(url).status_code == 302
    console.key.refresh_from_db()
    assert not console.key.is_active
    assert [e.action for e in events] == ["revoke"]
    page = who.manager.get(reverse("keys:key_detail", args=[console.key.pk]))
    assert "revoked" in page.content.decode()
    assert who.manager.get(url).status_code == 405


def test_rotating_a_key_shows_the_new_secret_once_and_keeps_the_old_one_for_the_grace(console, who):
    old_prefix = console.key.prefix
    with new_events() as events:
        response = who.manager.post(
            reverse("keys:key_rotate", args=[console.key.pk]), {"grace_hours": "2"}
        )
    console.key.refresh_from_db()
    secret = response.context["secret"]
    assert tokens.hash_key(secret) == console.key.secret_hash
    assert console.key.previous_prefix == old_prefix
    assert [e.action for e in events] == ["rotate"]


def test_a_provider_key_is_saved_encrypted_and_never_shown_again(console, who):
    url = reverse("keys:provider_key_new", args=[console.provider.pk])
    with new_events() as events:
        response = who.admin.post(
            url, {"name": "backup", "secret": "sk-live-backup-9876", "weight": 2, "is_active": "on"}
        )
    key = ProviderKey.objects.get(name="backup")
    assert response.status_code == 302
    assert key.last_four == "9876" and key.weight == 2
    assert [e.action for e in events] == ["create"]
    page = who.admin.get(reverse("keys:provider_keys", args=[console.provider.pk])).content.decode()
    assert "…9876" in page and "sk-live-backup-9876" not in page

    edit = reverse("keys:provider_key_edit", args=[console.provider.pk, key.pk])
    assert "sk-live-backup" not in who.admin.get(edit).content.decode()
    with new_events() as events:
        who.admin.post(edit, {"secret": "sk-live-backup-5555", "weight": 2, "is_active": "on"})
    key.refresh_from_db()
    assert key.last_four == "5555"
    assert [e.action for e in events] == ["rotate"]


def test_a_provider_with_an_unknown_option_is_refused_on_the_options_field(console, who):
    data = {"name": "azure", "kind": "azure", "base_url": "https://x.example", "options": "nope=1"}
    with new_events() as events:
        response = who.admin.post(reverse("keys:providers_new"), data)
    assert response.status_code == 400
    assert "Unknown option 'nope'" in response.context["form"].errors["options"][0]
    data["options"] = "api_version=2024-10-21"
    with new_events() as created:
        who.admin.post(reverse("keys:providers_new"), data)
    assert Provider.objects.get(name="azure").options == {"api_version": "2024-10-21"}
    assert events == [] and [e.action for e in created] == ["create"]


def test_a_route_is_created_with_its_fallbacks_in_order(console, who):
    with new_events() as events:
        who.admin.post(
            reverse("keys:routes_new"),
            {
                "name": "smart",
                "provider": console.provider.pk,
                "provider_model": "gpt-4o",
                "fallbacks": "gpt-4o\nopenai/gpt-4o-mini",
                "is_active": "on",
            },
        )
    assert ModelRoute.objects.get(name="smart").fallbacks == ["gpt-4o", "openai/gpt-4o-mini"]
    assert len(events) == 1


def test_a_team_manager_sets_a_budget_for_their_team_in_currency_units(console, who):
    with new_events() as events:
        response = who.manager.post(
            reverse("governance:budgets_new"),
            {"owner": f"team:{console.team.pk}", "amount_micros": "12.5", "period": "1w"},
        )
    budget = Budget.objects.latest("id")
    assert response.status_code == 302
    assert (budget.team, budget.amount_micros, budget.period) == (console.team, 12_500_000, "1w")
    assert [e.action for e in events] == ["create"]
    refused = who.manager.post(
        reverse("governance:budgets_new"),
        {"owner": f"team:{console.other_team.pk}", "amount_micros": "1", "period": "1d"},
    )
    assert refused.status_code == 400


def test_changing_a_budget_changes_its_amount_only(console, who):
    url = reverse("governance:budgets_edit", args=[console.budget.pk])
    with new_events() as events:
        who.manager.post(url, {"amount_micros": "7", "period": "1Y"})
    console.budget.refresh_from_db()
    assert (console.budget.amount_micros, console.budget.period) == (7_000_000, "1d")
    assert [e.action for e in events] == ["update"]


def test_a_price_is_typed_per_million_tokens(console, who):
    with new_events() as events:
        who.admin.post(
            reverse("governance:prices_new"),
            {
                "provider_kind": "anthropic",
                "model": "claude-sonnet-4-5",
                "input_micros_per_mtok": "3",
                "output_micros_per_mtok": "15",
                "cached_input_micros_per_mtok": "0.3",
            },
        )
    price = ModelPrice.objects.get(model="claude-sonnet-4-5")
    assert price.input_micros_per_mtok == 3_000_000
    assert price.cached_input_micros_per_mtok == 300_000
    assert [e.action for e in events] == ["create"]


def test_a_team_still_holding_keys_is_not_deleted(console, who):
    with new_events() as events:
        response = who.admin.post(reverse("keys:teams_delete", args=[console.team.pk]), follow=True)
    assert Team.objects.filter(pk=console.team.pk).exists()
    assert "still in use" in response.content.decode()
    assert events == []
    assert AuditEvent.objects.filter(action="delete").count() == 0


def test_deleting_a_rate_limit_writes_one_event(console, who):
    with new_events() as events:
        who.manager.post(reverse("governance:limits_delete", args=[console.limit.pk]))
    assert [e.action for e in events] == ["delete"]
    assert (
        who.manager.post(
            reverse("governance:limits_delete", args=[console.other_limit.pk])
        ).status_code
        == 404
    )


def test_an_admin_writes_a_guardrail_policy_as_lines_of_rules(console, who):
    from governance.models import GuardrailPolicy

    data = {
        "name": "pii",
        "owner": "global",
        "direction": "request",
        "detectors": "email: redact\nsecrets: block",
        "deny_patterns": "project-code flag PRJ-\\d{2,4}",
        "allow_patterns": "[a-z]+@example\\.com",
        "max_messages": "20",
        "is_active": "on",
    }
    with new_events() as events:
        created = who.admin.post(reverse("governance:guardrails_new"), data)
    policy = GuardrailPolicy.objects.get(name="pii")
    assert created.status_code == 302
    assert policy.scope == ("global", 0)
    assert policy.detectors == {"email": "redact", "secrets": "block"}
    assert policy.deny_patterns == [
        {"name": "project-code", "action": "flag", "pattern": "PRJ-\\d{2,4}"}
    ]
    assert policy.allow_patterns == ["[a-z]+@example\\.com"]
    assert (policy.direction, policy.max_messages) == ("request", 20)
    assert [e.action for e in events] == ["create"]

    url = reverse("governance:guardrails_edit", args=[policy.pk])
    page = who.admin.get(url).content.decode()
    assert "email: redact" in page and "project-code flag PRJ-" in page
    with new_events() as events:
        who.admin.post(url, {**data, "detectors": "email: flag", "is_active": ""})
        who.admin.post(url, {**data, "detectors": "email: flag", "is_active": ""})
    policy.refresh_from_db()
    assert (policy.detectors, policy.is_active, policy.name) == ({"email": "flag"}, False, "pii")
    assert [e.action for e in events] == ["update"]


def test_a_wrong_guardrail_rule_is_shown_on_its_field_and_changes_nothing(console, who):
    base = {"name": "bad", "owner": f"team:{console.team.pk}", "direction": "both"}
    with new_events() as events:
        unknown = who.admin.post(
            reverse("governance:guardrails_new"), {**base, "detectors": "telepathy: block"}
        )
        shapeless = who.admin.post(
            reverse("governance:guardrails_new"), {**base, "deny_patterns": "only-a-name"}
        )
        bad_regex = who.admin.post(
            reverse("governance:guardrails_new"), {**base, "deny_patterns": "x block ([a-z"}
        )
        manager = who.manager.post(reverse("governance:guardrails_new"), base)
    assert unknown.status_code == 400
    assert "telepathy" in str(unknown.context["form"].errors["detectors"])
    assert "name action pattern" in str(shapeless.context["form"].errors["deny_patterns"])
    assert bad_regex.status_code == 400 and bad_regex.context["form"].errors["deny_patterns"]
    assert manager.status_code == 403
    assert events == []
