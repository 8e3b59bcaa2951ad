"""Upstream failures reach the client as clear errors in its envelope."""

from __future__ import annotations

import openai
import pytest

from keys import services
from tests.processes import free_port

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_a_provider_outage_is_a_502(demo):
    demo.mock.add_rule(match={}, status=503)
    with pytest.raises(openai.InternalServerError) as caught:
        demo.openai().chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_error"


def test_a_provider_rate_limit_is_a_429_with_retry_after(demo):
    demo.mock.add_rule(match={}, status=429, retry_after=7)
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "upstream_rate_limited"


def test_a_provider_refusing_the_gateways_key_is_not_blamed_on_the_client(demo):
    demo.mock.add_rule(match={}, status=401)
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_error"


def test_a_provider_rejecting_the_request_keeps_its_status_and_message(demo):
    demo.mock.add_rule(match={}, status=400)
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upstream_invalid_request"


def test_an_unreachable_provider_is_a_502(demo):
    services.provider_update(provider=demo.provider, base_url=f"http://127.0.0.1:{free_port()}/v1")
    demo.sync()
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"


def test_a_connection_reset_is_a_502(demo):
    demo.mock.add_rule(match={}, reset=True)
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert response.status_code == 502


def test_malformed_upstream_json_is_a_502_and_the_gateway_survives(demo):
    demo.mock.add_rule(match={}, malformed="json", times=1)
    response = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_invalid_response"
    assert demo.openai().chat.completions.create(**CHAT).choices
