"""Secrets through the API: virtual keys and API tokens shown once, provider keys never."""

from __future__ import annotations

import pytest

from keys import tokens
from keys.models import ApiToken, VirtualKey
from tests.api_fixtures import ApiWorld, error_of
from tests.audit_fixtures import PROVIDER_SECRET, new_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def test_a_new_virtual_key_returns_its_secret_once(world):
    client = world.client("admin")

    created = client.post(
        "/api/v1/virtual-keys/", {"name": "search-ci", "team": world.team.pk}, format="json"
    ).json()

    secret = created["secret"]
    key = VirtualKey.objects.get(pk=created["id"])
    assert tokens.is_well_formed(secret) and tokens.hashes_match(secret, key.secret_hash)
    assert created["masked"] == key.masked
    again = client.get(f"/api/v1/virtual-keys/{key.pk}/").json()
    assert "secret" not in again
    listed = client.get("/api/v1/virtual-keys/").content.decode()
    assert secret not in listed and key.secret_hash not in listed


def test_a_rotation_returns_the_new_secret_once_and_keeps_the_old_one_for_the_grace(world):
    client = world.client("admin")

    with new_events() as events:
        response = client.post(
            f"/api/v1/virtual-keys/{world.key.pk}/rotate/", {"grace_seconds": 600}, format="json"
        )

    assert response.status_code == 200, response.content
    body = response.json()
    world.key.refresh_from_db()
    assert tokens.hashes_match(body["secret"], world.key.secret_hash)
    assert tokens.hashes_match(world.key_secret, world.key.previous_secret_hash)
    assert body["previous_valid_until"] is not None
    assert [e.action for e in events] == ["rotate"]
    assert "secret" not in client.get(f"/api/v1/virtual-keys/{world.key.pk}/").json()


def test_a_grace_period_out_of_range_is_a_400(world):
    response = world.client("admin").post(
        f"/api/v1/virtual-keys/{world.key.pk}/rotate/", {"grace_seconds": -1}, format="json"
    )

    assert response.status_code == 400
    assert "grace_seconds" in error_of(response)["fields"]


def test_a_revoked_key_says_so_and_cannot_be_rotated(world):
    client = world.client("admin")

    revoked = client.post(f"/api/v1/virtual-keys/{world.key.pk}/revoke/").json()
    rotated = client.post(f"/api/v1/virtual-keys/{world.key.pk}/rotate/")

    assert revoked["is_active"] is False and revoked["revoked_at"]
    assert rotated.status_code == 400
    assert "revoked" in error_of(rotated)["message"]


def test_a_new_api_token_returns_its_token_once(world):
    client = world.client("admin")

    created = client.post("/api/v1/api-tokens/", {"name": "deploy"}, format="json").json()

    token = ApiToken.objects.get(pk=created["id"])
    assert tokens.hashes_match(created["token"], token.secret_hash)
    assert created["user"] == "root"
    assert "token" not in client.get(f"/api/v1/api-tokens/{token.pk}/").json()
    assert created["token"] not in client.get("/api/v1/api-tokens/").content.decode()


def test_a_new_api_token_works_and_stops_working_when_revoked(world):
    admin = world.client("admin")
    created = admin.post(
        "/api/v1/api-tokens/", {"name": "deploy", "user": "vera"}, format="json"
    ).json()
    client = world.client(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")

    assert client.get("/api/v1/customers/").status_code == 200  # vera is a viewer
    admin.post(f"/api/v1/api-tokens/{created['id']}/revoke/")
    assert client.get("/api/v1/customers/").status_code == 401


def test_a_provider_keys_secret_is_never_returned_only_its_last_four(world):
    client = world.client("admin")

    created = client.post(
        "/api/v1/provider-keys/",
        {"provider": world.provider.pk, "name": "backup", "secret": "sk-live-secret-7777"},
        format="json",
    )
    replaced = client.post(
        f"/api/v1/provider-keys/{world.provider_key.pk}/replace-secret/",
        {"secret": "sk-live-rotated-8888"},
        format="json",
    )
    everything = client.get("/api/v1/provider-keys/").content.decode()

    assert created.status_code == 201 and replaced.status_code == 200
    assert "secret" not in created.json()
    assert created.json()["last_four"] == "7777"
    assert replaced.json()["last_four"] == "8888"
    for secret in ("sk-live-secret-7777", "sk-live-rotated-8888", PROVIDER_SECRET):
        assert secret not in everything
        assert secret not in created.content.decode() + replaced.content.decode()


def test_a_provider_keys_secret_sent_in_an_update_is_refused_with_the_way_to_replace_it(world):
    response = world.client("admin").patch(
        f"/api/v1/provider-keys/{world.provider_key.pk}/", {"secret": "sk-other"}, format="json"
    )

    assert response.status_code == 400
    assert "replace-secret" in response.json()["error"]["fields"]["secret"][0]
    assert "sk-other" not in response.content.decode()
    world.provider_key.refresh_from_db()
    assert world.provider_key.last_four == PROVIDER_SECRET[-4:]
