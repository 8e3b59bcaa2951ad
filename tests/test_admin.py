"""The Django admin changes things through the services."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model

from keys import crypto, selectors, tokens
from keys.models import Customer, ProviderKey, Team, VirtualKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


def test_creating_a_virtual_key_shows_its_secret_once(admin_client):
    team = Team.objects.create(name="ops")
    response = admin_client.post(
        "/admin/keys/virtualkey/add/",
        {"name": "ops-bot", "team": team.pk, "metadata": "{}", "store_content": "off"},
        follow=True,
    )
    page = response.content.decode()
    [secret] = re.findall(r"sk-gw-[A-Za-z0-9]{48}", page)
    key = VirtualKey.objects.get(name="ops-bot")
    assert key.secret_hash == tokens.hash_key(secret)
    assert key.store_content == "off"
    again = admin_client.get(f"/admin/keys/virtualkey/{key.pk}/change/").content.decode()
    assert secret not in again
    assert key.prefix in again


def test_saving_in_the_admin_bumps_the_configuration_revision(admin_client):
    before = selectors.config_revision()
    admin_client.post("/admin/keys/team/add/", {"name": "research", "metadata": "{}"})
    assert Team.objects.filter(name="research").exists()
    assert selectors.config_revision() != before


def test_a_provider_key_typed_in_the_admin_is_stored_encrypted(admin_client):
    admin_client.post(
        "/admin/keys/provider/add/",
        {
            "name": "openai",
            "kind": "openai",
            "base_url": "https://api.example/v1",
            "is_active": "on",
        },
    )
    provider_id = selectors.snapshot_rows()["providers"][0]["id"]
    admin_client.post(
        "/admin/keys/providerkey/add/",
        {
            "provider": provider_id,
            "name": "main",
            "secret": "sk-typed-in-0042",
            "weight": 2,
            "is_active": "on",
        },
    )
    key = ProviderKey.objects.get(name="main")
    assert crypto.decrypt(key.encrypted_secret) == "sk-typed-in-0042"
    page = admin_client.get(f"/admin/keys/providerkey/{key.pk}/change/").content.decode()
    assert "sk-typed-in-0042" not in page
    assert "0042" in page


def test_an_admin_edit_changes_the_stored_object(admin_client):
    team = Team.objects.create(name="ops")
    admin_client.post(
        f"/admin/keys/team/{team.pk}/change/",
        {"description": "On call", "metadata": "{}"},
    )
    team.refresh_from_db()
    assert team.description == "On call"


def test_the_revoke_action_revokes(admin_client):
    team = Team.objects.create(name="ops")
    from keys import services

    key, _ = services.virtual_key_create(name="k1", team=team)
    admin_client.post("/admin/keys/virtualkey/", {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert not key.is_active and key.revoked_at is not None


def test_a_team_created_in_the_admin_keeps_every_field_of_the_form(admin_client):
    admin_client.post(
        "/admin/keys/team/add/",
        {
            "name": "legal",
            "metadata": '{"cost_center": "7"}',
            "allowed_models": '["gpt-4o-mini"]',
            "max_concurrent_requests": "3",
            "cache_ttl_seconds": "60",
            "store_content": "on",
        },
    )
    team = Team.objects.get(name="legal")
    assert team.metadata == {"cost_center": "7"}
    assert team.allowed_models == ["gpt-4o-mini"]
    assert (team.max_concurrent_requests, team.cache_ttl_seconds) == (3, 60)
    assert team.store_content is True


def test_a_customer_created_in_the_admin_keeps_its_cache_and_policy_fields(admin_client):
    admin_client.post(
        "/admin/keys/customer/add/",
        {
            "name": "globex",
            "metadata": "{}",
            "allowed_models": "[]",
            "max_concurrent_requests": "5",
            "cache_shared_across_teams": "on",
        },
    )
    customer = Customer.objects.get(name="globex")
    assert customer.max_concurrent_requests == 5
    assert customer.cache_shared_across_teams is True


def test_a_staff_user_who_is_not_an_admin_cannot_set_admin_only_fields(client):
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("staff", password="pw-for-tests-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__endswith="_virtualkey"))
    client.force_login(user)
    team = Team.objects.create(name="ops")
    page = client.get("/admin/keys/virtualkey/add/").content.decode()
    assert 'name="store_content"' not in page
    client.post(
        "/admin/keys/virtualkey/add/",
        {"name": "ops-bot", "team": team.pk, "metadata": "{}", "store_content": "on"},
    )
    assert VirtualKey.objects.get(name="ops-bot").store_content == "inherit"
