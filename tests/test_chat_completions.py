"""The openai SDK gets completions and streams through the gateway."""

from __future__ import annotations

import httpx
import openai
import pytest


def test_it_returns_a_completion(demo):
    completion = demo.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_it_forwards_the_provider_model_and_the_provider_key(demo):
    demo.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], temperature=0.2
    )
    [received] = demo.mock.requests()
    assert received["body"]["model"] == "mock-gpt"
    assert received["body"]["temperature"] == 0.2
    assert received["headers"]["authorization"] == "Bearer sk-mock-primary-0001"


def test_it_streams_a_completion(demo):
    stream = demo.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_it_relays_the_stream_byte_for_byte(demo):
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    direct = httpx.post(f"{demo.mock.url}/v1/chat/completions", json=body).content
    body["model"] = "gpt-4o-mini"
    relayed = httpx.post(
        f"{demo.gateway.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {demo.key}"},
    )
    assert relayed.headers["content-type"].startswith("text/event-stream")
    assert relayed.content.endswith(b"data: [DONE]\n\n")
    # Ids and timestamps differ between two answers; the framing must not.
    assert relayed.content.count(b"\n\n") == direct.count(b"\n\n")


def test_it_reaches_a_provider_model_directly(demo):
    completion = demo.openai().chat.completions.create(
        model="mock/mock-direct", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.model == "mock-direct"


def test_it_says_which_provider_answered_and_echoes_the_request_id(demo):
    response = demo.gateway.client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {demo.key}", "x-request-id": "req-abc.123"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-abc.123"
    assert response.headers["x-gateway-provider"] == "mock"
    assert response.headers["x-gateway-model"] == "mock-gpt"


def test_it_lists_the_models(demo):
    models = demo.openai().models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]


def test_it_accepts_the_key_in_x_api_key(demo):
    response = demo.gateway.client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": demo.key},
    )
    assert response.status_code == 200


def test_a_streaming_client_can_use_the_openai_prefix(demo):
    client = openai.OpenAI(
        base_url=f"{demo.gateway.url}/openai/v1", api_key=demo.key, max_retries=0
    )
    with client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    ) as stream:
        assert any(chunk.choices and chunk.choices[0].finish_reason == "stop" for chunk in stream)


@pytest.mark.parametrize("n", [2])
def test_it_passes_n_through(demo, n):
    completion = demo.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], n=n
    )
    assert len(completion.choices) == n
