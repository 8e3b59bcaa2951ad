"""Every management endpoint: list, read, create, change, delete, each change audited once.

Driven by the endpoint table of ``tests.api_fixtures``, as an admin's API
token; the audit event must name the token and its user, and hold the
object's state before and after.
"""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from tests.api_fixtures import DELETABLE, ENDPOINTS, UPDATABLE, ApiWorld, error_of
from tests.audit_fixtures import new_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def only_event(events: list[AuditEvent], world: ApiWorld) -> AuditEvent:
    assert len(events) == 1, [str(e) for e in events]
    (event,) = events
    token, _ = world.token("admin")
    assert (event.actor_kind, event.actor_id) == ("api_token", token.pk)
    assert event.actor_name == "root (token admin-token)"
    return event


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_admin_lists_and_reads_every_kind(world, endpoint):
    obj = endpoint.existing(world)
    client = world.client("admin")

    listed = client.get(endpoint.url())
    detail = client.get(endpoint.url(obj))

    assert listed.status_code == 200, listed.content
    assert obj.pk in [row["id"] for row in listed.json()["results"]]
    assert detail.status_code == 200
    assert detail.json()["id"] == obj.pk


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_admin_creates_every_kind_with_one_audit_event(world, endpoint):
    client = world.client("admin")
    payload = endpoint.create(world)

    with new_events() as events:
        response = client.post(endpoint.url(), payload, format="json")

    assert response.status_code == 201, response.content
    created = endpoint.model.objects.get(pk=response.json()["id"])
    event = only_event(events, world)
    assert (event.action, event.object_type) == ("create", endpoint.model._meta.label_lower)
    assert event.object_id == str(created.pk)
    assert event.before is None
    assert event.after["id"] == created.pk


@pytest.mark.parametrize("endpoint", UPDATABLE, ids=str)
def test_an_admin_changes_every_kind_with_one_audit_event(world, endpoint):
    obj = endpoint.existing(world)
    client = world.client("admin")

    with new_events() as events:
        response = client.patch(endpoint.url(obj), endpoint.update, format="json")

    assert response.status_code == 200, response.content
    for name, value in endpoint.update.items():
        assert response.json()[name] == value
    event = only_event(events, world)
    assert event.action == "update"
    assert event.object_id == str(obj.pk)
    for name, value in endpoint.update.items():
        assert event.after[name] == value
        assert event.before[name] != value


@pytest.mark.parametrize("endpoint", UPDATABLE, ids=str)
def test_a_full_update_may_repeat_the_create_only_fields_but_not_change_them(world, endpoint):
    obj = endpoint.existing(world)
    client = world.client("admin")
    current = client.get(endpoint.url(obj)).json()
    created = endpoint.create(world)
    repeated = {name: current[name] for name in created if name in current}

    response = client.put(endpoint.url(obj), {**repeated, **endpoint.update}, format="json")

    assert response.status_code == 200, response.content
    if "name" in current:
        assert response.json()["name"] == current["name"]
    with new_events() as events:
        changed = client.put(endpoint.url(obj), {**created, **endpoint.update}, format="json")
    differing = {
        name for name, value in created.items() if name not in current or current[name] != value
    }
    fixed = set(changed.json()["error"].get("fields", {})) if changed.status_code == 400 else set()
    assert changed.status_code == 400, changed.content
    assert fixed and fixed <= differing
    assert events == []


@pytest.mark.parametrize("endpoint", UPDATABLE, ids=str)
def test_an_update_that_changes_nothing_writes_no_event(world, endpoint):
    obj = endpoint.existing(world)
    client = world.client("admin")
    client.patch(endpoint.url(obj), endpoint.update, format="json")

    with new_events() as events:
        response = client.patch(endpoint.url(obj), endpoint.update, format="json")

    assert response.status_code == 200
    assert events == []


@pytest.mark.parametrize("endpoint", DELETABLE, ids=str)
def test_an_admin_deletes_with_one_audit_event(world, endpoint):
    obj = endpoint.disposable(world)
    client = world.client("admin")

    with new_events() as events:
        response = client.delete(endpoint.url(obj))

    assert response.status_code == 204, response.content
    assert not endpoint.model.objects.filter(pk=obj.pk).exists()
    event = only_event(events, world)
    assert (event.action, event.object_id, event.after) == ("delete", str(obj.pk), None)
    assert event.before["id"] == obj.pk


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_invalid_input_is_a_400_naming_the_field_and_changes_nothing(world, endpoint):
    client = world.client("admin")
    count = endpoint.model.objects.count()

    with new_events() as events:
        response = client.post(endpoint.url(), endpoint.invalid(world), format="json")

    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert endpoint.invalid_field in error["fields"], error
    assert endpoint.model.objects.count() == count
    assert events == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_unknown_id_is_a_404_in_the_envelope(world, endpoint):
    response = world.client("admin").get(f"{endpoint.url()}999999/")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


ACTIONS = [
    ("virtual-keys", lambda w: w.key, "rotate", {"grace_seconds": 0}, "rotate"),
    ("virtual-keys", lambda w: w.key, "revoke", {}, "revoke"),
    ("provider-keys", lambda w: w.provider_key, "replace-secret", {"secret": "sk-new-1"}, "rotate"),
    ("api-tokens", lambda w: w.token("viewer")[0], "revoke", {}, "revoke"),
]


@pytest.mark.parametrize(
    ("path", "target", "verb", "body", "recorded"), ACTIONS, ids=[f"{a[0]}-{a[2]}" for a in ACTIONS]
)
def test_every_action_is_audited_once_as_the_token(world, path, target, verb, body, recorded):
    obj = target(world)
    client = world.client("admin")

    with new_events() as events:
        response = client.post(f"/api/v1/{path}/{obj.pk}/{verb}/", body, format="json")

    assert response.status_code == 200, response.content
    event = only_event(events, world)
    assert (event.action, event.object_id) == (recorded, str(obj.pk))
    assert event.before is not None and event.after is not None
    assert "secret" in event.after or event.after["revoked_at"]
