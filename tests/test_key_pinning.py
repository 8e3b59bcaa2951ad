"""Pinning a provider key for debugging: a virtual key an admin allowed may
name the provider key that serves its request (x-gateway-provider-key),
whatever the weights and without fallbacks; other keys are refused, and only
admins can grant the right — through the API and the console alike."""

from __future__ import annotations

import pytest

from keys import services
from keys.models import VirtualKey
from tests.api_fixtures import ApiWorld

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def post(demo, **headers):
    return demo.gateway.client.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {demo.key}", **headers},
    )


@pytest.fixture
def pinnable(demo):
    services.provider_key_create(
        provider=demo.provider, name="spare", secret="sk-mock-spare-0002", weight=0
    )
    key = VirtualKey.objects.get(team=demo.team)
    services.virtual_key_update(key=key, may_pin_provider_keys=True)
    demo.sync()
    return demo


def test_a_key_without_the_right_may_not_pin(demo):
    answer = post(demo, **{"x-gateway-provider-key": "primary"})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "key_pinning_not_allowed"
    assert demo.mock.requests() == []


def test_a_pinned_key_serves_every_request_whatever_its_weight(pinnable):
    for _ in range(5):
        assert post(pinnable, **{"x-gateway-provider-key": "spare"}).status_code == 200
    assert {r["api_key"] for r in pinnable.mock.requests()} == {"sk-mock-spare-0002"}
    # Unpinned, the weight-0 key gets nothing.
    pinnable.mock.reset()
    for _ in range(5):
        assert post(pinnable).status_code == 200
    assert {r["api_key"] for r in pinnable.mock.requests()} == {"sk-mock-primary-0001"}


def test_a_failing_pinned_key_is_not_replaced(pinnable):
    pinnable.mock.add_rule(match={"api_key": "sk-mock-spare-0002"}, status=401)
    answer = post(pinnable, **{"x-gateway-provider-key": "spare"})
    assert answer.status_code == 502
    assert {r["api_key"] for r in pinnable.mock.requests()} == {"sk-mock-spare-0002"}


def test_an_unknown_key_name_is_a_400(pinnable):
    answer = post(pinnable, **{"x-gateway-provider-key": "nope"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "x-gateway-provider-key"


@pytest.mark.django_db
def test_only_admins_grant_the_right_through_the_api():
    world = ApiWorld()
    url = f"/api/v1/virtual-keys/{world.key.pk}/"
    answer = world.client("manager").patch(url, {"may_pin_provider_keys": True}, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"]["may_pin_provider_keys"] == [
        "Only admins may set this field."
    ]
    unchanged = world.client("manager").patch(url, {"may_pin_provider_keys": False}, format="json")
    assert unchanged.status_code == 200
    world.key.refresh_from_db()
    assert not world.key.may_pin_provider_keys
    answer = world.client("admin").patch(url, {"may_pin_provider_keys": True}, format="json")
    assert answer.json()["may_pin_provider_keys"] is True
    world.key.refresh_from_db()
    assert world.key.may_pin_provider_keys


@pytest.mark.django_db
def test_only_admins_see_the_right_in_the_console(console, who):
    from django.urls import reverse

    url = reverse("keys:key_detail", args=[console.key.pk])
    assert b"may_pin_provider_keys" in who.admin.get(url).content
    assert b"may_pin_provider_keys" not in who.manager.get(url).content
    # A manager's edit leaves it as it was.
    services.virtual_key_update(key=console.key, may_pin_provider_keys=True)
    saved = who.manager.post(url, {"name": console.key.name, "team": console.team.pk})
    assert saved.status_code == 302
    console.key.refresh_from_db()
    assert console.key.may_pin_provider_keys
