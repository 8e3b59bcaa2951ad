"""Who may do what through the API: the roles of keys.access, endpoint by endpoint.

Anonymous callers get 401; a kind the role may not read, or a write the role
may not make, is a 403; another team's object does not exist for a team
manager (404). Every refusal is in the error envelope and changes nothing.
"""

from __future__ import annotations

import pytest

from tests.api_fixtures import (
    ENDPOINTS,
    MANAGER_READS,
    MANAGER_WRITES,
    TEAM_SCOPED,
    UPDATABLE,
    ApiWorld,
    error_of,
)
from tests.audit_fixtures import new_events

pytestmark = pytest.mark.django_db

READ_ONLY_PATHS = ("request-log", "usage", "audit-events")


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert error_of(response)["code"] == code


@pytest.mark.parametrize("path", [e.path for e in ENDPOINTS] + list(READ_ONLY_PATHS))
def test_an_anonymous_caller_is_asked_to_authenticate(world, path):
    response = world.client(None).get(f"/api/v1/{path}/")

    refused(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_anonymous_caller_cannot_create(world, endpoint):
    with new_events() as events:
        response = world.client(None).post(endpoint.url(), endpoint.create(world), format="json")

    refused(response, 401, "not_authenticated")
    assert events == []


@pytest.mark.parametrize("path", [e.path for e in ENDPOINTS] + list(READ_ONLY_PATHS))
def test_an_operator_without_a_role_sees_nothing(world, path):
    refused(world.client("nobody").get(f"/api/v1/{path}/"), 403, "permission_denied")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_viewer_reads_every_kind_but_changes_none(world, endpoint):
    client = world.client("viewer")
    obj = endpoint.existing(world)

    assert client.get(endpoint.url(obj)).status_code == 200
    with new_events() as events:
        created = client.post(endpoint.url(), endpoint.create(world), format="json")
        changed = client.patch(endpoint.url(obj), endpoint.update or {}, format="json")
        deleted = client.delete(endpoint.url(obj))

    refused(created, 403, "permission_denied")
    assert changed.status_code in (403, 405)
    assert deleted.status_code in (403, 405)
    assert events == []


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_an_auditor_reads_only_the_audit_trail(world, endpoint):
    client = world.client("auditor")

    refused(client.get(endpoint.url()), 403, "permission_denied")
    refused(client.get(endpoint.url(endpoint.existing(world))), 403, "permission_denied")
    assert client.get("/api/v1/audit-events/").status_code == 200


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_read_only_token_reads_but_cannot_write_even_for_an_admin(world, endpoint):
    client = world.client("admin", read_only=True)
    obj = endpoint.existing(world)

    assert client.get(endpoint.url(obj)).status_code == 200
    with new_events() as events:
        created = client.post(endpoint.url(), endpoint.create(world), format="json")
    refused(created, 403, "permission_denied")
    assert events == []


@pytest.mark.parametrize("endpoint", UPDATABLE, ids=str)
def test_a_read_only_token_cannot_change_or_delete(world, endpoint):
    client = world.client("admin", read_only=True)
    obj = endpoint.existing(world)

    refused(
        client.patch(endpoint.url(obj), endpoint.update, format="json"), 403, "permission_denied"
    )
    assert client.delete(endpoint.url(obj)).status_code in (403, 405)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_team_manager_reads_only_the_kinds_of_their_role(world, endpoint):
    response = world.client("manager").get(endpoint.url())

    if endpoint.path in MANAGER_READS:
        assert response.status_code == 200
    else:
        refused(response, 403, "permission_denied")


@pytest.mark.parametrize("endpoint", TEAM_SCOPED, ids=str)
def test_another_teams_object_does_not_exist_for_a_team_manager(world, endpoint):
    client = world.client("manager")
    theirs, other = endpoint.existing(world), endpoint.other_team(world)

    listed = [row["id"] for row in client.get(endpoint.url()).json()["results"]]
    assert theirs.pk in listed and other.pk not in listed
    assert client.get(endpoint.url(theirs)).status_code == 200
    refused(client.get(endpoint.url(other)), 404, "not_found")
    with new_events() as events:
        changed = client.patch(endpoint.url(other), endpoint.update, format="json")
        deleted = client.delete(endpoint.url(other))
    if endpoint.path in MANAGER_WRITES:
        refused(changed, 404, "not_found")
    else:  # the kind itself is not theirs to change
        refused(changed, 403, "permission_denied")
    if endpoint.disposable is None:  # keys are revoked, not deleted
        refused(deleted, 405, "method_not_allowed")
    elif endpoint.path in MANAGER_WRITES:
        refused(deleted, 404, "not_found")
    else:
        refused(deleted, 403, "permission_denied")
    assert events == []


@pytest.mark.parametrize("endpoint", TEAM_SCOPED, ids=str)
def test_a_team_manager_changes_their_teams_keys_budgets_and_limits_only(world, endpoint):
    client = world.client("manager")

    with new_events() as events:
        response = client.patch(
            endpoint.url(endpoint.existing(world)), endpoint.update, format="json"
        )

    if endpoint.path in MANAGER_WRITES:
        assert response.status_code == 200, response.content
        assert len(events) == 1
        assert events[0].actor_name == "tina (token manager-token)"
    else:
        refused(response, 403, "permission_denied")
        assert events == []


@pytest.mark.parametrize("endpoint", TEAM_SCOPED, ids=str)
def test_a_team_manager_creates_only_for_their_team(world, endpoint):
    client = world.client("manager")

    with new_events() as events:
        response = client.post(endpoint.url(), endpoint.create(world), format="json")

    if endpoint.path in MANAGER_WRITES:
        assert response.status_code == 201, response.content
        assert len(events) == 1
    else:
        refused(response, 403, "permission_denied")
        assert events == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("virtual-keys", lambda w: {"name": "sneaky", "team": w.other_team.pk}),
        ("budgets", lambda w: {"team": w.other_team.pk, "amount_micros": 1, "period": "1d"}),
        ("rate-limits", lambda w: {"virtual_key": w.other_key.pk, "metric": "tokens", "limit": 1}),
    ],
)
def test_another_team_cannot_be_named_as_the_owner_of_something_new(world, path, body):
    response = world.client("manager").post(f"/api/v1/{path}/", body(world), format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert set(error["fields"]) & {"team", "virtual_key"}


def test_a_team_manager_cannot_attach_a_budget_to_a_customer(world):
    body = {"customer": world.customer.pk, "amount_micros": 1, "period": "1d"}

    response = world.client("manager").post("/api/v1/budgets/", body, format="json")

    assert response.status_code == 400  # customers are not theirs to name
    assert "customer" in error_of(response)["fields"]


def test_a_team_manager_cannot_move_a_key_to_another_team(world):
    response = world.client("manager").patch(
        f"/api/v1/virtual-keys/{world.key.pk}/", {"team": world.other_team.pk}, format="json"
    )

    assert response.status_code == 400
    assert "team" in error_of(response)["fields"]
    world.key.refresh_from_db()
    assert world.key.team == world.team


def test_a_team_manager_rotates_and_revokes_only_their_teams_keys(world):
    client = world.client("manager")

    assert client.post(f"/api/v1/virtual-keys/{world.key.pk}/rotate/").status_code == 200
    refused(client.post(f"/api/v1/virtual-keys/{world.other_key.pk}/revoke/"), 404, "not_found")
    assert client.post(f"/api/v1/virtual-keys/{world.key.pk}/revoke/").status_code == 200


def test_a_viewer_cannot_rotate_or_revoke(world):
    client = world.client("viewer")

    refused(client.post(f"/api/v1/virtual-keys/{world.key.pk}/rotate/"), 403, "permission_denied")
    refused(client.post(f"/api/v1/virtual-keys/{world.key.pk}/revoke/"), 403, "permission_denied")


@pytest.mark.parametrize(
    "path,name",
    [
        ("virtual-keys", "team"),
        ("budgets", "team"),
        ("rate-limits", "virtual_key"),
        ("teams", "customer"),
    ],
)
def test_a_filter_by_another_teams_object_reveals_nothing_about_it(world, path, name):
    others = {"team": world.other_team.pk, "virtual_key": world.other_key.pk}
    others["customer"] = world.customer.pk + 1000
    manager = world.client("manager")

    existing = manager.get(f"/api/v1/{path}/", {name: others[name]})
    missing = manager.get(f"/api/v1/{path}/", {name: 987654321})
    huge = manager.get(f"/api/v1/{path}/", {name: 2**70})
    wrong = manager.get(f"/api/v1/{path}/", {name: "abc"})

    assert existing.status_code == missing.status_code == 200
    assert existing.json()["results"] == missing.json()["results"] == []
    refused(huge, 400, "invalid")
    refused(wrong, 400, "invalid")


def test_a_key_name_used_by_another_team_is_free_in_yours(world):
    body = {"name": world.other_key.name, "team": world.team.pk}
    response = world.client("manager").post("/api/v1/virtual-keys/", body, format="json")
    assert response.status_code == 201, response.content
    again = world.client("manager").post("/api/v1/virtual-keys/", body, format="json")
    refused(again, 400, "invalid")
