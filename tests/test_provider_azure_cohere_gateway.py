"""Azure OpenAI and Cohere providers end to end: the official OpenAI and Anthropic
SDKs talk to the gateway, which talks to the mock's Azure resource and Cohere API."""

from __future__ import annotations

from dataclasses import dataclass

import anthropic
import openai
import pytest

from keys import services
from tests.conftest import PIXEL, Demo

OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": OPENAI_TOOL["function"]["parameters"],
}
MODEL = "upstream-model"


@dataclass
class Upstream:
    """The demo with one more provider, reachable as ``upstream-model``."""

    demo: Demo
    kind: str
    path: str
    key: str

    def openai(self) -> openai.OpenAI:
        return self.demo.openai()

    def anthropic(self) -> anthropic.Anthropic:
        return self.demo.anthropic()

    def last_request(self) -> dict:
        [*_, received] = self.demo.mock.requests()
        assert received["path"] == self.path
        assert received["api_key"] == self.key
        return received


PROVIDERS = {
    "azure": (
        "azure",
        "/azure",
        {},
        "mock-gpt",
        "/azure/openai/deployments/mock-gpt/chat/completions",
    ),
    "azure-v1": (
        "azure",
        "/azure",
        {"api_version": "v1"},
        "mock-gpt",
        "/azure/openai/v1/chat/completions",
    ),
    "cohere": ("cohere", "", {}, "command-a-03-2025", "/v2/chat"),
}


def add_upstream(demo: Demo, name: str) -> Upstream:
    kind, prefix, options, provider_model, path = PROVIDERS[name]
    provider = services.provider_create(
        name=name,
        kind=kind,
        base_url=f"{demo.mock.url}{prefix}",
        allow_private_network=True,
        options=options,
    )
    secret = f"{name}-key-0001"
    services.provider_key_create(provider=provider, name="primary", secret=secret)
    services.model_route_create(name=MODEL, provider=provider, provider_model=provider_model)
    demo.sync()
    return Upstream(demo=demo, kind=kind, path=path, key=secret)


@pytest.fixture(params=sorted(PROVIDERS))
def upstream(request, demo: Demo) -> Upstream:
    return add_upstream(demo, request.param)


def test_the_openai_sdk_gets_a_completion(upstream: Upstream) -> None:
    completion = upstream.openai().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=5,
    )
    assert completion.choices[0].message.content == "word0 word1 word2 word3 word4"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.prompt_tokens == 10 and completion.usage.completion_tokens == 5
    sent = upstream.last_request()["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 5


def test_the_openai_sdk_streams(upstream: Upstream) -> None:
    chunks = list(
        upstream.openai().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(f"word{i}" for i in range(16))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 16
    upstream.last_request()


def test_the_openai_sdk_round_trips_a_tool_call(upstream: Upstream) -> None:
    sdk = upstream.openai()
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model=MODEL, messages=messages, tools=[OPENAI_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == '{"city":"mock"}'
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
    ]
    second = sdk.chat.completions.create(model=MODEL, messages=messages, tools=[OPENAI_TOOL])
    assert second.choices[0].finish_reason == "stop"
    sent = upstream.last_request()["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}


def test_the_openai_sdk_sends_an_image(upstream: Upstream) -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}}
    upstream.openai().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": "What?"}, image]}],
    )
    assert upstream.last_request()["body"]["messages"][0]["content"][1] == image


def test_the_anthropic_sdk_gets_a_message(upstream: Upstream) -> None:
    message = upstream.anthropic().messages.create(
        model=MODEL,
        max_tokens=3,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert message.content[0].text == "word0 word1 word2"
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens == 10 and message.usage.output_tokens == 3
    sent = upstream.last_request()["body"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


def test_the_anthropic_sdk_streams(upstream: Upstream) -> None:
    with upstream.anthropic().messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events if e.type not in ("text", "input_json")]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert final.content[0].text == " ".join(f"word{i}" for i in range(16))
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 16


def test_the_anthropic_sdk_round_trips_a_tool_call(upstream: Upstream) -> None:
    sdk = upstream.anthropic()
    messages: list = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.messages.create(
        model=MODEL, max_tokens=64, tools=[ANTHROPIC_TOOL], messages=messages
    )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "mock"}
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
        },
    ]
    second = sdk.messages.create(
        model=MODEL, max_tokens=64, tools=[ANTHROPIC_TOOL], messages=messages
    )
    assert second.stop_reason == "end_turn" and second.content[0].text
    sent = upstream.last_request()["body"]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == call.id
    assert sent[2]["tool_call_id"] == call.id


def test_the_anthropic_sdk_streams_a_tool_call(upstream: Upstream) -> None:
    with upstream.anthropic().messages.stream(
        model=MODEL,
        max_tokens=64,
        tools=[ANTHROPIC_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    [call] = [block for block in final.content if block.type == "tool_use"]
    assert call.input == {"city": "mock"}
    assert final.stop_reason == "tool_use"


def test_the_anthropic_sdk_sends_an_image(upstream: Upstream) -> None:
    upstream.anthropic().messages.create(
        model=MODEL,
        max_tokens=16,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert upstream.last_request()["body"]["messages"][0]["content"][0] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PIXEL}"},
    }


def test_an_upstream_rate_limit_reaches_the_openai_sdk(upstream: Upstream) -> None:
    upstream.demo.mock.add_rule(match={"api_key": upstream.key}, status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        upstream.openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.response.headers["retry-after"] == "7"


def test_the_providers_error_message_reaches_the_anthropic_sdk(upstream: Upstream) -> None:
    upstream.demo.mock.add_rule(
        match={"api_key": upstream.key}, status=400, error_message="invalid request: bad thing"
    )
    with pytest.raises(anthropic.BadRequestError) as caught:
        upstream.anthropic().messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert "invalid request: bad thing" in caught.value.message


def test_an_azure_content_filter_refusal_is_a_clear_400(demo: Demo) -> None:
    upstream = add_upstream(demo, "azure")
    with pytest.raises(openai.BadRequestError) as caught:
        upstream.openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[mock:content_filter]"}]
        )
    assert "content management policy" in caught.value.message


def test_a_cohere_stream_is_translated_not_relayed(demo: Demo) -> None:
    upstream = add_upstream(demo, "cohere")
    response = upstream.demo.gateway.client.post(
        "/v1/chat/completions",
        json={"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {upstream.demo.key}"},
    )
    assert response.status_code == 200
    assert b"event: message-start" not in response.content
    assert response.content.startswith(b"data: {") and b"data: [DONE]" in response.content
