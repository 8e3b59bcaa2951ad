"""Every add, change, delete and revoke in the admin records one event by its user."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from keys import services
from keys.models import ModelRoute, Team, VirtualKey
from tests.audit_fixtures import World, build_world, form_data, new_events

pytestmark = pytest.mark.django_db

BROWSER = {"HTTP_X_REQUEST_ID": "req-from-the-console", "HTTP_USER_AGENT": "Console/1.0"}


def post(client, url: str, **changes: Any):
    response = client.post(url, form_data(client, url, **changes), **BROWSER)
    assert response.status_code == 302, response.context["adminform"].form.errors
    return response


def assert_by_the_console_user(event: AuditEvent, user) -> None:
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("user", user.pk, "admin")
    assert event.request_id == "req-from-the-console"
    assert event.client_ip == "127.0.0.1"
    assert event.user_agent == "Console/1.0"


@pytest.fixture
def world() -> World:
    return build_world()


ADD_FORMS = {
    "customer": {"name": "globex"},
    "team": {"name": "ads"},
    "virtualkey": {"name": "ads-prod"},
    "provider": {
        "name": "local",
        "kind": "openai",
        "base_url": "http://127.0.0.1:9/v1",
        "allow_private_network": "on",
    },
    "providerkey": {"name": "secondary", "secret": "sk-typed-in-0042"},
    "modelroute": {"name": "gpt-4o-mini", "provider_model": "gpt-4o-mini"},
}


@pytest.mark.parametrize("model", sorted(ADD_FORMS))
def test_an_add_form_records_one_create_event_by_the_user(admin_client, admin_user, world, model):
    related = {"team": world.team.pk, "provider": world.provider.pk}
    with new_events() as events:
        post(admin_client, f"/admin/keys/{model}/add/", **related, **ADD_FORMS[model])
    [event] = events
    assert event.action == "create"
    assert event.object_type == f"keys.{model}"
    assert event.before is None and event.after["name"] == ADD_FORMS[model]["name"]
    assert_by_the_console_user(event, admin_user)
    assert "sk-typed-in-0042" not in str(event.after)


CHANGE_FORMS = {
    "customer": ("customer", {"description": "ACME Corp"}, "update", "description"),
    "team": ("team", {"description": "Search"}, "update", "description"),
    "virtualkey": ("key", {"metadata": '{"owner": "bob"}'}, "update", "metadata"),
    "provider": ("provider", {"base_url": "https://b.example/v1"}, "update", "base_url"),
    "providerkey": ("provider_key", {"weight": "5"}, "update", "weight"),
    "providerkey-secret": ("provider_key", {"secret": "sk-typed-in-0043"}, "rotate", "secret"),
    "modelroute": ("route", {"provider_model": "gpt-4o-2024"}, "update", "provider_model"),
}


@pytest.mark.parametrize("case", sorted(CHANGE_FORMS))
def test_a_change_form_records_one_event_with_before_and_after(
    admin_client, admin_user, world, case
):
    attribute, changes, action, field = CHANGE_FORMS[case]
    obj = getattr(world, attribute)
    url = f"/admin/keys/{obj._meta.model_name}/{obj.pk}/change/"
    with new_events() as events:
        post(admin_client, url, **changes)
    [event] = events
    assert event.action == action
    assert event.object_id == str(obj.pk)
    assert event.before[field] != event.after[field]
    assert_by_the_console_user(event, admin_user)


def test_a_change_form_saved_unchanged_records_nothing(admin_client, world):
    with new_events() as events:
        post(admin_client, f"/admin/keys/team/{world.team.pk}/change/")
    assert events == []


def delete(client, obj) -> None:
    url = f"/admin/keys/{obj._meta.model_name}/{obj.pk}/delete/"
    response = client.post(url, {"post": "yes"}, **BROWSER)
    assert response.status_code == 302
    assert not type(obj).objects.filter(pk=obj.pk).exists()


def test_the_delete_page_records_one_delete_event(admin_client, admin_user, world):
    for obj in (
        services.team_create(name="empty"),
        world.route,
        world.provider_key,
    ):
        with new_events() as events:
            delete(admin_client, obj)
        [event] = events
        assert (event.action, event.object_type) == ("delete", obj._meta.label_lower)
        assert event.object_id == str(obj.pk) and event.after is None
        assert event.before["name"] == obj.name
        assert_by_the_console_user(event, admin_user)


def test_deleting_a_provider_records_the_deletion_of_its_keys_too(admin_client, world):
    services.model_route_delete(route=world.route)  # routes protect their provider
    with new_events() as events:
        delete(admin_client, world.provider)
    assert sorted((e.object_type, e.object_id) for e in events) == [
        ("keys.provider", str(world.provider.pk)),
        ("keys.providerkey", str(world.provider_key.pk)),
    ]
    assert all(e.action == "delete" for e in events)


def test_the_delete_action_records_one_event_per_object(admin_client, admin_user, world):
    routes = [
        services.model_route_create(name=f"r{i}", provider=world.provider, provider_model="m")
        for i in range(3)
    ]
    with new_events() as events:
        response = admin_client.post(
            "/admin/keys/modelroute/",
            {
                "action": "delete_selected",
                "post": "yes",
                "_selected_action": [route.pk for route in routes],
            },
            **BROWSER,
        )
    assert response.status_code == 302
    assert not ModelRoute.objects.filter(name__in=["r0", "r1", "r2"]).exists()
    assert sorted(e.object_id for e in events) == sorted(str(r.pk) for r in routes)
    for event in events:
        assert event.action == "delete"
        assert_by_the_console_user(event, admin_user)


def test_a_refused_delete_records_nothing(admin_client, world):
    with new_events() as events:
        admin_client.post(f"/admin/keys/team/{world.team.pk}/delete/", {"post": "yes"})
    assert Team.objects.filter(pk=world.team.pk).exists()  # its keys protect it
    assert events == []


def test_the_revoke_action_records_one_revoke_event_per_key(admin_client, admin_user, world):
    other, _ = services.virtual_key_create(name="search-dev", team=world.team)
    with new_events() as events:
        admin_client.post(
            "/admin/keys/virtualkey/",
            {"action": "revoke", "_selected_action": [world.key.pk, other.pk]},
            **BROWSER,
        )
    assert not VirtualKey.objects.filter(is_active=True).exists()
    assert sorted(e.object_id for e in events) == sorted([str(world.key.pk), str(other.pk)])
    for event in events:
        assert event.action == "revoke"
        assert (event.before["is_active"], event.after["is_active"]) == (True, False)
        assert_by_the_console_user(event, admin_user)


def test_the_audit_admin_shows_events_and_changes_none(admin_client, world):
    event = AuditEvent.objects.first()
    assert admin_client.get("/admin/audit/auditevent/").status_code == 200
    page = admin_client.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert page.status_code == 200 and event.hash in page.content.decode()
    assert admin_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert admin_client.post(f"/admin/audit/auditevent/{event.pk}/change/", {}).status_code == 403
    assert (
        admin_client.post(
            f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}
        ).status_code
        == 403
    )
    listing = admin_client.get("/admin/audit/auditevent/")
    assert "delete_selected" not in listing.content.decode()
    assert AuditEvent.objects.filter(pk=event.pk, hash=event.hash).exists()


def test_an_api_token_made_in_the_admin_shows_its_secret_once_and_is_revoked_not_deleted(
    admin_client, admin_user, world
):
    from keys.models import ApiToken

    with new_events() as events:
        response = admin_client.post(
            "/admin/keys/apitoken/add/",
            form_data(admin_client, "/admin/keys/apitoken/add/", name="ci", user=admin_user.pk),
            follow=True,
            **BROWSER,
        )
    token = ApiToken.objects.get(name="ci")
    [shown] = [str(m) for m in response.context["messages"] if "will not be shown again" in str(m)]
    secret = shown.rsplit(" ", 1)[-1]
    assert token.masked.rstrip("…") in secret
    [event] = events
    assert (event.action, event.object_type) == ("create", "keys.apitoken")
    assert secret not in str(event.after)
    assert_by_the_console_user(event, admin_user)
    assert admin_client.get(f"/admin/keys/apitoken/{token.pk}/").content.decode().count(secret) == 0
    assert admin_client.get(f"/admin/keys/apitoken/{token.pk}/delete/").status_code == 403

    with new_events() as events:
        admin_client.post(
            "/admin/keys/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, **BROWSER
        )
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert [e.action for e in events] == ["revoke"]


def test_a_token_expiring_in_the_past_is_refused_on_its_field(admin_client, admin_user, world):
    url = "/admin/keys/apitoken/add/"
    data = form_data(admin_client, url, name="old", user=admin_user.pk)
    data.update({"expires_at_0": "2000-01-01", "expires_at_1": "00:00:00"})
    with new_events() as events:
        response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "past" in str(response.context["adminform"].form.errors["expires_at"])
    assert events == []


def test_roles_are_granted_and_withdrawn_in_the_admin_with_one_event_each(
    admin_client, admin_user, world
):
    from django.contrib.auth import get_user_model

    from keys.models import RoleAssignment

    bob = get_user_model().objects.create_user("bob")
    url = "/admin/keys/roleassignment/add/"
    with new_events() as granted:
        post(admin_client, url, user=bob.pk, role="team_manager", team=world.team.pk)
    assignment = RoleAssignment.objects.get(user=bob)
    with new_events() as refused:
        response = admin_client.post(
            url, form_data(admin_client, url, user=bob.pk, role="viewer", team=world.team.pk)
        )
    with new_events() as withdrawn:
        admin_client.post(
            f"/admin/keys/roleassignment/{assignment.pk}/delete/", {"post": "yes"}, **BROWSER
        )
    assert [e.action for e in granted] == ["create"]
    assert_by_the_console_user(granted[0], admin_user)
    assert response.status_code == 200 and refused == []
    assert [e.action for e in withdrawn] == ["delete"]
    assert not RoleAssignment.objects.filter(user=bob).exists()
