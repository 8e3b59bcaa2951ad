"""Signing in to the API: admin API tokens (Bearer) and the console's session with CSRF."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from keys import services
from keys.models import ApiToken
from tests.api_fixtures import ApiWorld, error_of
from tests.audit_fixtures import new_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def bearer(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def test_a_valid_token_authenticates_as_its_user(world):
    assert world.client("admin").get("/api/v1/customers/").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Bearer gw-api-notarealtokenatall",
        "Bearer gw-api-abcdefgh" + "x" * 40,
        "Bearer sk-gw-abcdefgh" + "x" * 40,
        "Bearer",
        "Bearer two parts",
    ],
)
def test_a_malformed_or_unknown_token_is_refused(world, header):
    response = bearer(header).get("/api/v1/customers/")

    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"


def test_a_token_with_the_right_prefix_and_a_wrong_secret_is_refused(world):
    _, secret = world.token("admin")
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    assert bearer(f"Bearer {forged}").get("/api/v1/customers/").status_code == 401


def test_a_revoked_token_is_refused_at_once(world):
    token, secret = world.token("admin")
    services.api_token_revoke(token=token)

    response = bearer(f"Bearer {secret}").get("/api/v1/customers/")

    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


def test_an_expired_token_is_refused(world):
    token, secret = services.api_token_create(
        user=world.users["admin"], name="short", expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    response = bearer(f"Bearer {secret}").get("/api/v1/customers/")

    assert response.status_code == 401
    assert "expired" in error_of(response)["message"]


def test_the_token_of_a_deactivated_user_is_refused(world):
    _, secret = world.token("admin")
    get_user_model().objects.filter(username="root").update(is_active=False)

    assert bearer(f"Bearer {secret}").get("/api/v1/customers/").status_code == 401


def test_last_use_is_written_at_most_once_a_minute_and_not_audited(world):
    token, _ = world.token("viewer")
    client = world.client("viewer")

    with new_events() as events:
        client.get("/api/v1/customers/")
        token.refresh_from_db()
        first = token.last_used_at
        client.get("/api/v1/customers/")
        token.refresh_from_db()

    assert first is not None
    assert token.last_used_at == first
    assert events == []
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - dt.timedelta(minutes=2))
    client.get("/api/v1/customers/")
    token.refresh_from_db()
    assert token.last_used_at > first


def test_a_signed_in_session_works_and_is_audited_as_the_user(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.users["admin"])
    client.get("/admin/")  # sets the CSRF cookie
    csrf = client.cookies["csrftoken"].value

    with new_events() as events:
        response = client.post(
            "/api/v1/customers/", {"name": "globex"}, format="json", HTTP_X_CSRFTOKEN=csrf
        )

    assert response.status_code == 201, response.content
    assert [(e.actor_kind, e.actor_name) for e in events] == [("user", "root")]


def test_a_session_write_without_the_csrf_token_is_refused(world):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.users["admin"])

    response = client.post("/api/v1/customers/", {"name": "globex"}, format="json")

    assert response.status_code == 403
    assert "CSRF" in error_of(response)["message"]


def test_changes_made_with_a_token_name_the_token_and_its_user(world):
    token, _ = world.token("admin")

    with new_events() as events:
        world.client("admin").post("/api/v1/customers/", {"name": "globex"}, format="json")

    (event,) = events
    assert (event.actor_kind, event.actor_id, event.actor_name) == (
        "api_token",
        token.pk,
        "root (token admin-token)",
    )
    assert event.request_id
