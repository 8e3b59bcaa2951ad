"""The Gemini adapter's requests are accepted by the mock Generative Language
API over real HTTP, and its answers (whole, streamed, failed) read back."""

from __future__ import annotations

import math
from typing import Any

import httpx
import orjson
import pytest

from proxy.errors import GatewayError
from proxy.providers.base import Target
from proxy.providers.gemini import GeminiAdapter
from tests.adapter_helpers import send, stream_over_http
from tests.conftest import PIXEL

ADAPTER = GeminiAdapter()
MODEL = "gemini-2.5-flash"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "city": {"type": "string", "format": "uri"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f", None]},
            },
            "required": ["city", "unit"],
        },
    },
}
WORDS_16 = " ".join(f"word{i}" for i in range(16))


@pytest.fixture
def mock(mock_provider):
    mock_provider.reset()
    return mock_provider


def target(mock, **options: str) -> Target:
    return Target(
        base_url=f"{mock.url}/v1beta", api_key="AIza-mock-key", model=MODEL, options=options
    )


def chat(text: str = "Say hello please", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


def complete(mock, payload: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = send(ADAPTER.chat_request(target(mock), payload, stream=False), **headers)
    assert response.status_code == 200, response.text
    return ADAPTER.chat_response(response.json(), model="route-model")


def stream(mock, payload: dict[str, Any], **headers: str) -> tuple[list[dict[str, Any]], Any]:
    request = ADAPTER.chat_request(target(mock), payload, stream=True)
    return stream_over_http(ADAPTER, request, headers=headers)


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [choice["delta"] for chunk in chunks for choice in chunk["choices"]]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(delta.get("content") or "" for delta in deltas(chunks))


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]


def test_it_completes_a_chat_against_the_mock(mock):
    result = complete(
        mock,
        chat(messages=None)
        | {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello please"},
            ]
        },
    )
    assert result["choices"][0]["message"] == {"role": "assistant", "content": WORDS_16}
    assert result["choices"][0]["finish_reason"] == "stop"
    # Words of the system instruction and the turn, plus 3 for the one content.
    assert result["usage"]["prompt_tokens"] == 2 + 3 + 3
    assert result["usage"]["completion_tokens"] == 16
    [received] = mock.requests()
    assert received["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert received["headers"]["x-goog-api-key"] == "AIza-mock-key"
    assert received["body"]["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_max_tokens_and_stop_sequences_reach_gemini(mock):
    capped = complete(mock, chat(max_tokens=3))
    assert capped["choices"][0]["message"]["content"] == "word0 word1 word2"
    assert capped["choices"][0]["finish_reason"] == "length"
    stopped = complete(mock, chat(stop=[" word4"]))
    assert stopped["choices"][0]["message"]["content"] == "word0 word1 word2 word3"
    assert stopped["choices"][0]["finish_reason"] == "stop"


def test_several_candidates_become_several_choices(mock):
    result = complete(mock, chat(n=2, max_tokens=2))
    assert [c["index"] for c in result["choices"]] == [0, 1]
    assert result["usage"]["completion_tokens"] == 4


def test_it_streams_a_chat_from_the_mock(mock):
    chunks, usage = stream(mock, chat())
    assert deltas(chunks)[0] == {"role": "assistant", "content": ""}
    assert text_of(chunks) == WORDS_16
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
    assert (usage.input_tokens, usage.output_tokens) == (6, 16)
    [received] = mock.requests()
    assert received["path"] == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert received["query"] == "alt=sse"


def test_the_mock_streams_a_json_array_without_alt_sse(mock):
    request = ADAPTER.chat_request(target(mock), chat(max_tokens=2), stream=True)
    response = httpx.post(
        request.url.removesuffix("?alt=sse"), headers=request.headers, content=request.body
    )
    events = response.json()
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in events] == [
        "word0",
        " word1",
    ]
    assert events[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_a_tool_call_round_trip_against_the_mock(mock):
    first = complete(mock, chat("Weather in Paris?", tools=[WEATHER]))
    [choice] = first["choices"]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "mock", "unit": "c"}
    assert call["id"].startswith("call_0_")

    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny and 21C"},
    ]
    second = complete(mock, chat(messages=None) | {"messages": messages, "tools": [WEATHER]})
    assert second["choices"][0]["finish_reason"] == "stop"
    assert second["choices"][0]["message"]["content"] == WORDS_16
    sent = mock.requests()[-1]["body"]
    assert sent["contents"][1]["parts"][0]["functionCall"]["name"] == "get_weather"
    assert sent["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny and 21C"}}}
    ]


def test_it_streams_a_tool_call_from_the_mock(mock):
    chunks, usage = stream(mock, chat("Weather?", tools=[WEATHER], tool_choice="required"))
    calls = [call for delta in deltas(chunks) for call in delta.get("tool_calls", [])]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_0_")
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert orjson.loads(arguments) == {"city": "mock", "unit": "c"}
    assert finish_reasons(chunks) == ["tool_calls"]
    assert usage.output_tokens > 0


def test_tool_choice_none_makes_the_mock_answer_in_text(mock):
    result = complete(mock, chat(tools=[WEATHER], tool_choice="none"))
    assert result["choices"][0]["message"]["content"] == WORDS_16


def test_an_image_reaches_the_mock_inline_and_by_url(mock):
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    result = complete(
        mock, chat(messages=None) | {"messages": [{"role": "user", "content": content}]}
    )
    assert result["choices"][0]["message"]["content"] == WORDS_16
    parts = mock.requests()[-1]["body"]["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": PIXEL}}
    assert parts[2] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}
    }


def test_structured_output_fits_the_schema(mock):
    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "colour": {"type": "string", "enum": ["red", "blue"]},
            "n": {"type": "integer"},
        },
        "required": ["colour", "n"],
    }
    result = complete(
        mock,
        chat(
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}
        ),
    )
    assert orjson.loads(result["choices"][0]["message"]["content"]) == {"colour": "red", "n": 1}


def test_the_safety_option_and_a_blocked_prompt(mock):
    request = ADAPTER.chat_request(
        target(mock, safety_threshold="BLOCK_NONE"), chat("[mock:content_filter] now"), stream=False
    )
    response = send(request)
    assert response.status_code == 200
    result = ADAPTER.chat_response(response.json(), model="m")
    assert result["choices"][0]["finish_reason"] == "content_filter"
    settings = mock.requests()[-1]["body"]["safetySettings"]
    assert {s["threshold"] for s in settings} == {"BLOCK_NONE"} and len(settings) == 4


def test_an_answer_filtered_mid_stream_ends_with_content_filter(mock):
    chunks, _ = stream(mock, chat("[mock:filter_output] go"))
    assert text_of(chunks) == "word0"
    assert finish_reasons(chunks) == ["content_filter"]


@pytest.mark.parametrize(("status", "name"), [(429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")])
def test_an_injected_error_comes_in_googles_envelope(mock, status, name):
    behaviour = orjson.dumps({"status": status, "retry_after": 2}).decode()
    response = send(
        ADAPTER.chat_request(target(mock), chat(), stream=False), **{"x-mock-behaviour": behaviour}
    )
    assert response.status_code == status
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == status and error["status"] == name and error["message"]


def test_the_mock_refuses_a_request_without_a_key(mock):
    request = ADAPTER.chat_request(target(mock), chat(), stream=False)
    response = httpx.post(request.url, content=request.body)
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"


def test_the_mock_refuses_json_schema_keywords_gemini_lacks(mock):
    # What the adapter saves its callers from: a raw JSON schema sent as is.
    declaration = {"name": "f", "parameters": WEATHER["function"]["parameters"]}
    native = {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "tools": [{"functionDeclarations": [declaration]}],
    }
    response = send(ADAPTER.native_request(target(mock), native, stream=False))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "additionalProperties"' in error["message"]
    assert "tools[0].function_declarations[0].parameters" in error["message"]


def test_the_mock_refuses_a_role_gemini_does_not_know(mock):
    native = {"contents": [{"role": "assistant", "parts": [{"text": "Hi"}]}]}
    response = send(ADAPTER.native_request(target(mock), native, stream=False))
    assert response.status_code == 400
    assert "valid role" in response.json()["error"]["message"]


def test_a_malformed_stream_is_a_502(mock):
    with pytest.raises(GatewayError) as caught:
        stream(mock, chat(), **{"x-mock-behaviour": '{"malformed": "sse"}'})
    assert caught.value.status == 502


def test_a_stalled_stream_delivers_what_came_before_it(mock):
    request = ADAPTER.chat_request(target(mock), chat(), stream=True)
    decoder = ADAPTER.stream_decoder(model="m")
    chunks: list[dict[str, Any]] = []
    headers = {**request.headers, "x-mock-behaviour": '{"stall_after_tokens": 2}'}
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream(
            "POST", request.url, headers=headers, content=request.body, timeout=1
        ) as response:
            for piece in response.iter_raw():
                chunks.extend(decoder.feed(piece))
    assert text_of(chunks) == "word0 word1"
    assert decoder.usage is not None and decoder.usage.output_tokens == 2


def test_embeddings_through_the_mock(mock):
    request = ADAPTER.embeddings_request(
        target(mock), {"model": "e", "input": ["hello world", "bye"], "dimensions": 4}
    )
    response = send(request)
    assert response.status_code == 200, response.text
    result = ADAPTER.embeddings_response(response.json(), model="e")
    vectors = [item["embedding"] for item in result["data"]]
    assert [len(v) for v in vectors] == [4, 4] and vectors[0] != vectors[1]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-5) for v in vectors)
    assert mock.requests()[-1]["path"] == f"/v1beta/models/{MODEL}:batchEmbedContents"


def test_count_tokens_follows_the_mocks_token_model(mock):
    response = httpx.post(
        f"{mock.url}/v1beta/models/{MODEL}:countTokens",
        headers={"x-goog-api-key": "k"},
        json={"contents": [{"role": "user", "parts": [{"text": "one two three"}]}]},
    )
    assert response.json()["totalTokens"] == 6
