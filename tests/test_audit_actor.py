"""Each event says who acted and from which request: console user, command or system."""

from __future__ import annotations

import re
import textwrap

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import AsyncClient

from audit.context import Actor, AuditContext, audit_context, system_actor
from keys import services
from keys.models import Team
from tests.audit_fixtures import form_data, new_events

pytestmark = pytest.mark.django_db


def test_a_change_with_nobody_in_the_context_is_the_systems():
    with new_events() as events:
        services.team_create(name="ops")
    [event] = events
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("system", None, "system")
    assert (event.request_id, event.client_ip, event.user_agent) == ("", None, "")


def test_a_change_inside_an_audit_context_is_attributed_to_its_actor():
    token = Actor(kind="api_token", name="ci-deployer", id=42)
    context = AuditContext(actor=token, request_id="req-42", client_ip="10.1.2.3", user_agent="ci")
    with new_events() as events, audit_context(context):
        services.team_create(name="ops")
    [event] = events
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("api_token", 42, "ci-deployer")
    assert (event.request_id, event.client_ip, event.user_agent) == ("req-42", "10.1.2.3", "ci")


def test_the_context_ends_with_its_block():
    with system_actor("one-off"):
        pass
    with new_events() as events:
        services.team_create(name="ops")
    assert events[0].actor_name == "system"


def test_apply_config_acts_as_system_apply_config_with_one_request_id_per_run(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("teams:\n  - name: ops\n  - name: lab\n")
    with new_events() as first:
        call_command("apply_config", str(path), stdout=None)
    path.write_text(
        textwrap.dedent(
            """
            teams:
              - name: ops
                description: on call
            """
        )
    )
    with new_events() as second:
        call_command("apply_config", str(path))
    assert [e.action for e in first] == ["create", "create"]
    assert [e.action for e in second] == ["update"]
    for event in [*first, *second]:
        assert (event.actor_kind, event.actor_name) == ("system", "system:apply_config")
    assert first[0].request_id == first[1].request_id != second[0].request_id


def test_a_console_request_carries_its_request_id_back(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response["X-Request-ID"] == "abc-123"


def test_a_request_id_that_does_not_look_like_one_is_replaced(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="no spaces\nor newlines")
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_the_console_user_is_the_actor_when_served_over_asgi_too(admin_client, admin_user):
    data = form_data(admin_client, "/admin/keys/team/add/", name="ops")
    asgi = AsyncClient()
    asgi.force_login(admin_user)
    with new_events() as events:
        response = async_to_sync(asgi.post)(
            "/admin/keys/team/add/", data, headers={"X-Request-ID": "req-over-asgi"}
        )
    assert response.status_code == 302
    assert Team.objects.filter(name="ops").exists()
    [event] = events
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("user", admin_user.pk, "admin")
    assert event.request_id == "req-over-asgi"
    assert response["X-Request-ID"] == "req-over-asgi"
