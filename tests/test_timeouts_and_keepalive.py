"""Timeouts per provider (and a client's shorter deadline) end a slow
attempt with a 504; a stream waiting for a slow provider gets SSE keep-alive
comments, which both SDKs read past."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from django.core.exceptions import ValidationError

from keys import services
from keys.models import Provider
from tests.conftest import gateway_env
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
WORDS = " ".join(f"word{i}" for i in range(16))


@pytest.fixture
def keeping_alive(demo):
    server = GatewayProcess(gateway_env(GATEWAY_SSE_KEEPALIVE_SECONDS="0.5"))
    try:
        server.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        yield server
    finally:
        server.close()


def stream_raw(server, key, **body) -> bytes:
    with httpx.Client(timeout=30) as client:
        answer = client.post(
            f"{server.url}/v1/chat/completions",
            json={**CHAT, "stream": True, **body},
            headers={"authorization": f"Bearer {key}"},
        )
    assert answer.status_code == 200
    return answer.content


def test_a_slow_first_byte_gets_keep_alive_comments(demo, keeping_alive):
    demo.mock.add_rule(slow_first_byte_ms=1600)
    body = stream_raw(keeping_alive, demo.key)
    head, _, rest = body.partition(b"data: ")
    assert head.count(b": keep-alive\n\n") >= 2
    assert rest and b"[DONE]" in rest


def test_a_slow_first_token_gets_them_too(demo, keeping_alive):
    demo.mock.add_rule(ttft_ms=1600)
    body = stream_raw(keeping_alive, demo.key)
    assert body.count(b": keep-alive\n\n") >= 2


def test_the_sdks_read_past_the_comments(claude, keeping_alive):
    claude.mock.add_rule(slow_first_byte_ms=1200)
    sdk = openai.OpenAI(base_url=f"{keeping_alive.url}/v1", api_key=claude.key, max_retries=0)
    chunks = sdk.chat.completions.create(**CHAT, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == WORDS
    import anthropic

    client = anthropic.Anthropic(
        base_url=f"{keeping_alive.url}/anthropic", api_key=claude.key, max_retries=0
    )
    with client.messages.stream(
        model="claude-sonnet", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert stream.get_final_message().content[0].text == WORDS


def test_an_error_after_keep_alives_is_an_event_of_the_stream(demo, keeping_alive):
    demo.mock.add_rule(slow_first_byte_ms=1200, status=500)
    sdk = openai.OpenAI(base_url=f"{keeping_alive.url}/v1", api_key=demo.key, max_retries=0)
    with pytest.raises(openai.APIError) as caught:
        list(sdk.chat.completions.create(**CHAT, stream=True))
    assert "HTTP 500" in str(caught.value) or "500" in str(caught.value.body)


def test_a_fast_stream_has_no_comment(demo):
    body = stream_raw(demo.gateway, demo.key)
    assert b"keep-alive" not in body


def test_a_providers_first_byte_timeout_ends_a_slow_attempt(demo):
    services.provider_update(provider=demo.provider, options={"first_byte_timeout": "0.3"})
    demo.sync()
    demo.mock.add_rule(slow_first_byte_ms=3000)
    started = time.monotonic()
    answer = demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "upstream_timeout"
    # Three attempts of 0.3 s and their backoff, not three of 3 s.
    assert time.monotonic() - started < 3


def test_a_client_may_ask_for_a_shorter_deadline(demo):
    demo.mock.add_rule(slow_first_byte_ms=3000)
    started = time.monotonic()
    answer = demo.gateway.client.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {demo.key}", "x-gateway-timeout": "0.3"},
    )
    assert answer.status_code == 504
    assert time.monotonic() - started < 3


def test_a_malformed_deadline_is_a_400(demo):
    answer = demo.gateway.client.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {demo.key}", "x-gateway-timeout": "soon"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "x-gateway-timeout"


@pytest.mark.parametrize("value", ["abc", "0", "-1", "100000"])
def test_a_timeout_option_must_be_a_sensible_number(db, value):
    options = {"read_timeout": value}
    provider = Provider(name="p", kind="openai", base_url="http://x", options=options)
    with pytest.raises(ValidationError):
        provider.clean()
