"""The anthropic SDK reaches Anthropic untouched and OpenAI-shaped providers
translated, streaming included; the openai SDK reaches Anthropic translated."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.conftest import PIXEL
from tests.ledger_helpers import new_tag, record_tagged

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def hello(**extra):
    return {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Say hello"}],
        **extra,
    }


# --- Anthropic client, Anthropic provider: passed through --------------------------


def test_it_relays_a_message_to_anthropic_as_sent(claude):
    message = claude.anthropic().messages.create(
        model="claude-sonnet", system="Be brief.", metadata={"user_id": "u-1"}, **hello()
    )
    assert message.type == "message"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens > 0
    [received] = claude.mock.requests()
    assert received["path"] == "/anthropic/v1/messages"
    assert received["body"] == {
        "model": "mock-claude",
        "system": "Be brief.",
        "metadata": {"user_id": "u-1"},
        **hello(),
    }
    assert received["headers"]["x-api-key"] == "sk-ant-mock-0001"
    assert received["headers"]["anthropic-version"] == "2023-06-01"


def test_it_relays_an_anthropic_stream_byte_for_byte(claude):
    body = {"model": "mock-claude", "stream": True, **hello()}
    direct = httpx.post(f"{claude.mock.url}/anthropic/v1/messages", json=body).content
    body["model"] = "claude-sonnet"
    relayed = httpx.post(
        f"{claude.gateway.url}/anthropic/v1/messages", json=body, headers={"x-api-key": claude.key}
    )
    assert relayed.headers["content-type"].startswith("text/event-stream")
    events = [line for line in relayed.content.split(b"\n") if line.startswith(b"event: ")]
    assert events == [line for line in direct.split(b"\n") if line.startswith(b"event: ")]
    assert events[0] == b"event: message_start" and events[-1] == b"event: message_stop"


def test_it_records_the_usage_of_an_anthropic_stream(claude, celery_worker):
    tag = new_tag()
    with claude.anthropic().messages.stream(
        model="claude-sonnet", extra_headers={"x-request-id": tag}, **hello()
    ) as stream:
        final = stream.get_final_message()
    record = record_tagged(tag)
    assert record.output_tokens == final.usage.output_tokens
    assert record.input_tokens == final.usage.input_tokens
    assert not record.usage_estimated


# --- Anthropic client, OpenAI provider: translated -----------------------------------


def test_it_translates_a_message_for_an_openai_provider(claude):
    message = claude.anthropic().messages.create(
        model="gpt-4o-mini", system="Be brief.", stop_sequences=["END"], **hello()
    )
    assert message.role == "assistant"
    assert message.model == "gpt-4o-mini"
    assert message.stop_reason == "end_turn"
    assert message.content[0].text.startswith("word0")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    [received] = claude.mock.requests()
    assert received["path"] == "/v1/chat/completions"
    assert received["body"] == {
        "model": "mock-gpt",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        "max_tokens": 64,
        "stop": ["END"],
    }


def test_it_streams_anthropic_events_from_an_openai_provider(claude):
    with claude.anthropic().messages.stream(model="gpt-4o-mini", **hello()) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events if event.type not in ("text", "input_json")]
    assert kinds[:3] == ["message_start", "content_block_start", "content_block_delta"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    direct = claude.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=64
    )
    assert final.content[0].text == direct.choices[0].message.content
    assert final.usage.output_tokens == direct.usage.completion_tokens
    assert final.usage.input_tokens == direct.usage.prompt_tokens
    assert final.stop_reason == "end_turn"


def test_it_sends_a_ping_after_the_message_start(claude):
    response = httpx.post(
        f"{claude.gateway.url}/anthropic/v1/messages",
        json={"model": "gpt-4o-mini", "stream": True, **hello()},
        headers={"x-api-key": claude.key},
    )
    events = [line for line in response.content.split(b"\n") if line.startswith(b"event: ")]
    assert events[:2] == [b"event: message_start", b"event: ping"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_it_completes_a_tool_round_trip(claude, model):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    sdk = claude.anthropic()
    first = sdk.messages.create(model=model, max_tokens=64, tools=[WEATHER_TOOL], messages=messages)
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
        model=model, max_tokens=64, tools=[WEATHER_TOOL], messages=messages
    )
    assert second.stop_reason == "end_turn" and second.content[0].text
    sent = claude.mock.requests()[-1]["body"]
    if model == "gpt-4o-mini":
        assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}
        assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]
    else:
        assert sent["messages"][2]["content"][0]["tool_use_id"] == call.id


def test_it_streams_a_tool_call_from_an_openai_provider(claude):
    with claude.anthropic().messages.stream(
        model="gpt-4o-mini",
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    [call] = final.content
    assert call.type == "tool_use" and call.id.startswith("call_")
    assert call.input == {"city": "mock"}
    assert final.stop_reason == "tool_use"


def test_it_translates_an_image_for_an_openai_provider(claude):
    claude.anthropic().messages.create(
        model="gpt-4o-mini",
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
    [received] = claude.mock.requests()
    assert received["body"]["messages"][0]["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        {"type": "text", "text": "What is this?"},
    ]


# --- OpenAI client, Anthropic provider: translated -----------------------------------


def test_the_openai_sdk_reaches_anthropic(claude):
    completion = claude.openai().chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=32,
        stop="END",
    )
    assert completion.choices[0].message.content.startswith("word0")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens > 0
    [received] = claude.mock.requests()
    assert received["path"] == "/anthropic/v1/messages"
    assert received["body"] == {
        "model": "mock-claude",
        "max_tokens": 32,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello"}],
        "stop_sequences": ["END"],
    }


def test_the_openai_sdk_streams_from_anthropic(claude):
    chunks = list(
        claude.openai().chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "Say hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    direct = claude.anthropic().messages.create(model="claude-sonnet", **hello(max_tokens=4096))
    assert text == direct.content[0].text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == direct.usage.output_tokens


def test_the_openai_sdk_round_trips_a_tool_call_with_anthropic(claude):
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER_TOOL["input_schema"]},
    }
    sdk = claude.openai()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model="claude-sonnet", messages=messages, tools=[tool])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
    ]
    second = sdk.chat.completions.create(model="claude-sonnet", messages=messages, tools=[tool])
    assert second.choices[0].finish_reason == "stop"
    sent = claude.mock.requests()[-1]["body"]
    assert sent["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": call.id,
        "name": "get_weather",
        "input": {"city": "mock"},
    }
    assert sent["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}
    ]


def test_the_openai_sdk_streams_a_tool_call_from_anthropic(claude):
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER_TOOL["input_schema"]},
    }
    chunks = list(
        claude.openai().chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=[tool],
            stream=True,
        )
    )
    calls = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert calls[0].id.startswith("toolu_") and calls[0].function.name == "get_weather"
    assert "".join(c.function.arguments or "" for c in calls) == '{"city":"mock"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_openai_sdk_sends_an_image_to_anthropic(claude):
    claude.openai().chat.completions.create(
        model="claude-sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            }
        ],
    )
    [received] = claude.mock.requests()
    assert received["body"]["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
    }


# --- counting tokens, errors ---------------------------------------------------------


def test_it_relays_count_tokens_to_anthropic(claude):
    counted = claude.anthropic().messages.count_tokens(
        model="claude-sonnet", messages=[{"role": "user", "content": "one two three"}]
    )
    assert counted.input_tokens == 6  # the mock: three words + 3 for the message


def test_it_estimates_count_tokens_for_other_providers(claude):
    counted = claude.anthropic().messages.count_tokens(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "one two three"}]
    )
    # The gateway's tokenizer: "user one two three" is 4 tokens, plus 3 for the message.
    assert counted.input_tokens == 7


def test_errors_come_in_anthropics_envelope(claude):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude.anthropic().with_options(api_key="sk-gw-wrong").messages.create(
            model="claude-sonnet", **hello()
        )
    assert caught.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        claude.anthropic().messages.create(model="no-such-model", **hello())
    response = httpx.post(
        f"{claude.gateway.url}/anthropic/v1/messages",
        json={"model": "claude-sonnet", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": claude.key},
    )
    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_an_upstream_rate_limit_reaches_the_anthropic_sdk(claude, model):
    claude.mock.add_rule(status=429, retry_after=7)
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.anthropic().messages.create(model=model, **hello())
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.body["error"]["type"] == "rate_limit_error"


def test_the_openai_sdk_gets_a_clear_error_for_what_anthropic_cannot_do(claude):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        claude.openai().chat.completions.create(
            model="claude-sonnet", messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert caught.value.body["code"] == "unsupported_parameter"
    assert caught.value.body["param"] == "n"
    assert claude.mock.requests() == []


def test_it_lists_the_callers_models_in_anthropics_shape(claude):
    page = claude.anthropic().models.list()
    assert [model.id for model in page.data] == ["claude-sonnet", "gpt-4o-mini"]
    assert page.data[0].type == "model"


def test_the_anthropic_sdk_sends_an_image_to_anthropic_untouched(claude):
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PIXEL}},
        {"type": "text", "text": "What is this?"},
    ]
    claude.anthropic().messages.create(
        model="claude-sonnet", max_tokens=16, messages=[{"role": "user", "content": content}]
    )
    [received] = claude.mock.requests()
    assert received["body"]["messages"][0]["content"] == content


def test_the_openai_sdk_round_trips_a_tool_call_with_an_openai_provider(claude):
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER_TOOL["input_schema"]},
    }
    sdk = claude.openai()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this was taken?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            ],
        }
    ]
    first = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[tool])
    [call] = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
    ]
    second = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[tool])
    assert second.choices[0].finish_reason == "stop"
    sent = claude.mock.requests()[-1]["body"]
    assert sent["messages"][0]["content"][1]["image_url"]["url"].endswith(PIXEL)
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}
