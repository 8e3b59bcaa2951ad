"""The official OpenAI and Anthropic SDKs reach a Gemini provider through the
gateway: completions, streams, tool round trips and images, translated."""

from __future__ import annotations

import json

import openai
import pytest

from keys import services
from tests.conftest import PIXEL

MODEL = "gemini-2.5-flash"
WORDS_16 = " ".join(f"word{i}" for i in range(16))
OPENAI_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ANTHROPIC_WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": OPENAI_WEATHER["function"]["parameters"],
}


@pytest.fixture
def gemini(demo):
    """A Gemini provider (the mock's Generative Language API) routed as ``gemini``."""
    provider = services.provider_create(
        name="google",
        kind="gemini",
        base_url=f"{demo.mock.url}/v1beta",
        allow_private_network=True,
        options={"safety_threshold": "BLOCK_ONLY_HIGH"},
    )
    services.provider_key_create(provider=provider, name="primary", secret="AIza-mock-0001")
    services.model_route_create(name="gemini", provider=provider, provider_model=MODEL)
    demo.sync()
    return demo


def gemini_requests(demo) -> list[dict]:
    return [r for r in demo.mock.requests() if r["path"].startswith("/v1beta/models/")]


# --- the openai SDK -----------------------------------------------------------------------


def test_the_openai_sdk_completes_a_chat_with_gemini(gemini):
    completion = gemini.openai().chat.completions.create(
        model="gemini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello please"},
        ],
        max_tokens=100,
        temperature=0.3,
    )
    assert completion.choices[0].message.content == WORDS_16
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 8 and completion.usage.completion_tokens == 16
    [received] = gemini_requests(gemini)
    assert received["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert received["headers"]["x-goog-api-key"] == "AIza-mock-0001"
    body = received["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.3}
    assert {s["threshold"] for s in body["safetySettings"]} == {"BLOCK_ONLY_HIGH"}


def test_the_openai_sdk_streams_from_gemini(gemini):
    chunks = list(
        gemini.openai().chat.completions.create(
            model="gemini",
            messages=[{"role": "user", "content": "Say hello please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == WORDS_16
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16
    [received] = gemini_requests(gemini)
    assert received["path"].endswith(":streamGenerateContent") and received["query"] == "alt=sse"


def test_the_openai_sdk_round_trips_a_tool_call_with_gemini(gemini):
    client = gemini.openai()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(
        model="gemini", messages=messages, tools=[OPENAI_WEATHER]
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'},
    ]
    second = client.chat.completions.create(
        model="gemini", messages=messages, tools=[OPENAI_WEATHER]
    )
    assert second.choices[0].message.content == WORDS_16
    sent = gemini_requests(gemini)[-1]["body"]
    assert sent["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}
    ]
    assert "additionalProperties" not in json.dumps(sent["tools"])


def test_the_openai_sdk_streams_a_tool_call_from_gemini(gemini):
    chunks = list(
        gemini.openai().chat.completions.create(
            model="gemini",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[OPENAI_WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads("".join(c.function.arguments or "" for c in calls)) == {"city": "mock"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    config = gemini_requests(gemini)[-1]["body"]["toolConfig"]
    assert config == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


def test_the_openai_sdk_sends_an_image_to_gemini(gemini):
    completion = gemini.openai().chat.completions.create(
        model="gemini",
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
    assert completion.choices[0].message.content == WORDS_16
    parts = gemini_requests(gemini)[-1]["body"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}


def test_the_openai_sdk_gets_a_400_for_what_gemini_cannot_do(gemini):
    with pytest.raises(openai.BadRequestError) as caught:
        gemini.openai().chat.completions.create(
            model="gemini",
            messages=[{"role": "user", "content": "Hi"}],
            logit_bias={"42": 5},
        )
    assert "gemini" in caught.value.message
    assert gemini_requests(gemini) == []


def test_a_gemini_rate_limit_reaches_the_openai_sdk(gemini):
    gemini.mock.add_rule(match={"path": ":generateContent"}, status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        gemini.openai().chat.completions.create(
            model="gemini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 429


def test_a_key_google_calls_invalid_is_set_aside_and_another_key_serves(gemini):
    provider = gemini.provider.__class__.objects.get(name="google")
    primary = provider.keys.get(name="primary")
    # The refused key is the one nearly always picked first.
    services.provider_key_update(key=primary, weight=1000)
    services.provider_key_create(provider=provider, name="spare", secret="AIza-mock-0002")
    gemini.sync()
    gemini.mock.add_rule(
        match={"api_key": "AIza-mock-0001"},
        status=400,
        error_message="API key not valid. Please pass a valid API key. [API_KEY_INVALID]",
    )
    for _ in range(4):
        completion = gemini.openai().chat.completions.create(
            model="gemini", messages=[{"role": "user", "content": "Say hello please"}]
        )
        assert completion.choices[0].message.content == WORDS_16
    keys = [record["api_key"] for record in gemini_requests(gemini)]
    assert keys.count("AIza-mock-0001") == 1
    assert keys.count("AIza-mock-0002") == 4


# --- the anthropic SDK --------------------------------------------------------------------


def test_the_anthropic_sdk_reaches_gemini(gemini):
    message = gemini.anthropic().messages.create(
        model="gemini",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello please"}],
    )
    assert message.content[0].type == "text" and message.content[0].text == WORDS_16
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 16
    body = gemini_requests(gemini)[-1]["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"]["maxOutputTokens"] == 64


def test_the_anthropic_sdk_streams_from_gemini(gemini):
    with gemini.anthropic().messages.stream(
        model="gemini", max_tokens=64, messages=[{"role": "user", "content": "Say hello please"}]
    ) as events:
        text = "".join(events.text_stream)
        final = events.get_final_message()
    assert text == WORDS_16
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 16


def test_the_anthropic_sdk_round_trips_a_tool_call_with_gemini(gemini):
    client = gemini.anthropic()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(
        model="gemini", max_tokens=64, messages=messages, tools=[ANTHROPIC_WEATHER]
    )
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "mock"}
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
        },
    ]
    second = client.messages.create(
        model="gemini", max_tokens=64, messages=messages, tools=[ANTHROPIC_WEATHER]
    )
    assert second.stop_reason == "end_turn" and second.content[0].text == WORDS_16
    sent = gemini_requests(gemini)[-1]["body"]["contents"]
    assert sent[1]["role"] == "model"
    assert sent[1]["parts"][-1]["functionCall"] == {"name": "get_weather", "args": {"city": "mock"}}
    assert sent[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}
    ]


def test_the_anthropic_sdk_sends_an_image_to_gemini(gemini):
    message = gemini.anthropic().messages.create(
        model="gemini",
        max_tokens=64,
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
    assert message.content[0].text == WORDS_16
    parts = gemini_requests(gemini)[-1]["body"]["contents"][0]["parts"]
    assert {"inlineData": {"mimeType": "image/png", "data": PIXEL}} in parts


def test_the_openai_sdk_gets_embeddings_from_gemini(gemini):
    result = gemini.openai().embeddings.create(
        model="gemini", input=["hello world", "bye"], dimensions=4
    )
    assert [len(item.embedding) for item in result.data] == [4, 4]
    assert result.data[0].embedding != result.data[1].embedding
    [received] = gemini_requests(gemini)
    assert received["path"] == f"/v1beta/models/{MODEL}:batchEmbedContents"
    assert [r["outputDimensionality"] for r in received["body"]["requests"]] == [4, 4]
