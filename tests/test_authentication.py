"""Virtual keys: missing, unknown, revoked, expired, and new keys."""

from __future__ import annotations

import datetime as dt

import openai
import pytest
from django.utils import timezone

from keys import services, tokens
from keys.models import VirtualKey

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_it_refuses_a_request_without_a_key(demo):
    response = demo.gateway.client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    assert demo.mock.request_count() == 0


def test_it_refuses_an_unknown_key_as_the_sdk_expects(demo):
    with pytest.raises(openai.AuthenticationError) as caught:
        demo.openai(key=tokens.generate_key()).chat.completions.create(**CHAT)
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"


def test_it_refuses_a_key_whose_secret_is_wrong_but_prefix_is_right(demo):
    forged = demo.key[:-4] + ("AAAA" if not demo.key.endswith("AAAA") else "BBBB")
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401


def test_it_refuses_garbage_in_the_authorization_header(demo):
    for value in ("Bearer", "Basic abc", "Bearer sk-gw-short", "Bearer \u00e9\u00e9"):
        response = demo.gateway.client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": value.encode("utf-8")}
        )
        assert response.status_code == 401, value


def test_it_refuses_a_revoked_key(demo):
    services.virtual_key_revoke(key=VirtualKey.objects.get(name="platform-app"))
    demo.sync()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        demo.openai().chat.completions.create(**CHAT)
    assert caught.value.body["code"] == "key_revoked"


def test_it_refuses_an_expired_key(demo):
    key = VirtualKey.objects.get(name="platform-app")
    services.virtual_key_update(key=key, expires_at=timezone.now() - dt.timedelta(seconds=1))
    demo.sync()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        demo.openai().chat.completions.create(**CHAT)
    assert caught.value.body["code"] == "key_expired"


def test_a_key_created_a_moment_ago_works_at_once(demo):
    _, secret = services.virtual_key_create(name="fresh", team=demo.team)
    # No waiting for the snapshot: a miss is looked up in the database.
    completion = demo.openai(key=secret).chat.completions.create(**CHAT)
    assert completion.choices


def test_only_a_hash_of_the_key_is_stored(demo):
    key = VirtualKey.objects.get(name="platform-app")
    stored = " ".join(str(value) for value in VirtualKey.objects.values_list().get(pk=key.pk))
    assert demo.key not in stored
    assert demo.key[len(tokens.KEY_SCHEME) + tokens.PREFIX_LENGTH :] not in stored
    assert key.secret_hash == tokens.hash_key(demo.key)
