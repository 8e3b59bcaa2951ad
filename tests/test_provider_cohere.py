"""The Cohere v2 adapter: golden translations, and real HTTP against the mock's /v2 API."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import pytest

from proxy.errors import GatewayError
from proxy.providers import REGISTRY
from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.cohere import CohereAdapter
from tests import adapter_helpers
from tests.adapter_helpers import decode_in_cuts, send
from tests.processes import MockProviderProcess

adapter = CohereAdapter()
TARGET = Target("https://api.cohere.com", "secret-key", "command-a-03-2025", {})


def golden(name: str) -> list[dict[str, Any]]:
    return adapter_helpers.golden("cohere", name)


def without_created(value: Any) -> Any:
    # ``created`` is the decoding time; everything else is pinned.
    if isinstance(value, dict):
        return {k: 0 if k == "created" else without_created(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_created(v) for v in value]
    return value


def decode(data: bytes, size: int) -> list[dict[str, Any]]:
    return decode_in_cuts(adapter.stream_decoder(model="route-model"), data, size)


def stream_over_http(request: UpstreamRequest) -> tuple[list[dict[str, Any]], Any]:
    return adapter_helpers.stream_over_http(adapter, request, chunk_size=7)


def target(mock: MockProviderProcess, **options: str) -> Target:
    return Target(mock.url, "co-key-0001", "command-a-03-2025", options)


HI = {"model": "gpt-4o", "messages": [{"role": "user", "content": "say hi"}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather by city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# -- golden translations ----------------------------------------------------------------


def test_it_is_registered_with_its_own_wire() -> None:
    assert isinstance(REGISTRY["cohere"], CohereAdapter)
    assert REGISTRY["cohere"].wire == "cohere"


@pytest.mark.parametrize("case", golden("requests"), ids=lambda c: c["name"])
def test_it_translates_each_request_as_golden(case: dict[str, Any]) -> None:
    spec = case["target"]
    request = adapter.chat_request(
        Target(spec["base_url"], "secret-key", spec["model"], spec["options"]),
        case["request"],
        stream=case["stream"],
    )
    expected = case["expected"]
    assert (request.method, request.url, request.headers) == (
        expected["method"],
        expected["url"],
        expected["headers"],
    )
    assert json.loads(request.body or b"") == expected["body"]


@pytest.mark.parametrize("case", golden("answers"), ids=lambda c: c["name"])
def test_it_reads_each_answer_as_golden(case: dict[str, Any]) -> None:
    answer = adapter.chat_response(case["answer"], model="route-model")
    assert without_created(answer) == case["expected"]


@pytest.mark.parametrize("size", [1, 2, 5, 64, 1 << 20])
@pytest.mark.parametrize("case", golden("streams"), ids=lambda c: c["name"])
def test_it_decodes_each_stream_as_golden_however_it_is_cut(
    case: dict[str, Any], size: int
) -> None:
    decoder = adapter.stream_decoder(model="route-model")
    data = case["stream"].encode()
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(data), size):
        chunks += decoder.feed(data[start : start + size])
    chunks += decoder.finish()
    assert without_created(chunks) == case["expected"]
    assert decoder.usage is not None
    assert {
        "input_tokens": decoder.usage.input_tokens,
        "output_tokens": decoder.usage.output_tokens,
        "cached_tokens": decoder.usage.cached_tokens,
    } == case["usage"]


def test_chunks_are_returned_as_soon_as_their_event_is_complete() -> None:
    stream = golden("streams")[0]["stream"].encode()
    decoder = adapter.stream_decoder(model="m")
    first_event_end = stream.index(b"\n\n") + 2
    assert decoder.feed(stream[: first_event_end - 1]) == []
    assert decoder.feed(stream[first_event_end - 1 : first_event_end])[0]["choices"][0][
        "delta"
    ] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"tools": [{"type": "web_search"}]}, "tools"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_features_cohere_lacks_are_refused_with_a_400(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as error:
        adapter.chat_request(TARGET, {**HI, **payload}, stream=False)
    assert (error.value.status, error.value.code, error.value.param) == (
        400,
        "unsupported_parameter",
        param,
    )


def test_a_named_tool_choice_must_name_an_offered_tool() -> None:
    payload = {
        **HI,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "other"}},
    }
    with pytest.raises(GatewayError) as error:
        adapter.chat_request(TARGET, payload, stream=False)
    assert error.value.status == 400


@pytest.mark.parametrize(("reason", "status"), [("ERROR", 502), ("TIMEOUT", 504)])
def test_a_failed_generation_is_an_upstream_error(reason: str, status: int) -> None:
    answer = {"id": "x", "message": {"role": "assistant", "content": []}, "finish_reason": reason}
    with pytest.raises(GatewayError) as error:
        adapter.chat_response(answer, model="m")
    assert error.value.status == status
    stream = (
        'event: message-start\ndata: {"type":"message-start","id":"x"}\n\n'
        'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"'
        + reason
        + '"}}\n\n'
    )
    with pytest.raises(GatewayError) as error:
        decode(stream.encode(), 3)
    assert error.value.status == status


@pytest.mark.parametrize(
    "stream",
    [
        'event: message-start\ndata: {"type":"message-start","id":"x"}\n\n',
        "event: content-delta\ndata: {not json\n\n",
        'event: tool-call-delta\ndata: {"type":"tool-call-delta","index":0,"delta":{}}\n\n',
    ],
    ids=["cut-before-message-end", "not-json", "delta-before-start"],
)
def test_an_unreadable_stream_is_a_bad_gateway(stream: str) -> None:
    with pytest.raises(GatewayError) as error:
        decode(stream.encode(), 4)
    assert (error.value.status, error.value.code) == (502, "upstream_invalid_response")


def test_an_answer_without_a_message_is_a_bad_gateway() -> None:
    with pytest.raises(GatewayError) as error:
        adapter.chat_response({"message": "invalid api token"}, model="m")
    assert error.value.status == 502


def test_embeddings_translate_both_ways() -> None:
    request = adapter.embeddings_request(
        Target("https://api.cohere.com", "k", "embed-v4.0", {"embed_input_type": "search_query"}),
        {"model": "text-embedding-3-small", "input": ["a b", "c"], "dimensions": 256},
    )
    assert request.url == "https://api.cohere.com/v2/embed"
    assert request.headers["authorization"] == "Bearer k"
    assert json.loads(request.body or b"") == {
        "model": "embed-v4.0",
        "texts": ["a b", "c"],
        "input_type": "search_query",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    answer = {
        "id": "e",
        "texts": ["a b", "c"],
        "embeddings": {"float": [[0.5, -0.25], [1.0, 0.0]]},
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3}},
        "response_type": "embeddings_by_type",
    }
    assert adapter.embeddings_response(answer, model="text-embedding-3-small") == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    encoded = adapter.embeddings_response(answer, model="m", encoding_format="base64")
    assert struct.unpack("<2f", base64.b64decode(encoded["data"][0]["embedding"])) == (0.5, -0.25)
    with pytest.raises(GatewayError):
        adapter.embeddings_request(TARGET, {"model": "m", "input": [[1, 2, 3]]})


# -- over HTTP against the mock ------------------------------------------------------------


def test_a_completion_reads_back_as_canonical(mock_provider: MockProviderProcess) -> None:
    mock_provider.reset()
    payload = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "say hi"},
        ],
        "max_tokens": 4,
        "temperature": 0.3,
        "top_p": 0.5,
        "seed": 1,
        "stream_options": {"include_usage": True},
    }
    response = send(adapter.chat_request(target(mock_provider), payload, stream=False))
    # The mock refuses any field Cohere does not know: this proves none leaked through.
    assert response.status_code == 200, response.text
    answer = adapter.chat_response(response.json(), model="route-model")
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "word0 word1 word2 word3",
    }
    assert answer["choices"][0]["finish_reason"] == "length"
    # tokens (not billed_units) count: 2 + 2 words + 3 per message.
    assert answer["usage"]["prompt_tokens"] == 10
    seen = mock_provider.requests(1)[0]
    assert seen["path"] == "/v2/chat"
    assert seen["headers"]["authorization"] == "Bearer co-key-0001"
    assert seen["body"]["p"] == 0.5 and seen["body"]["max_tokens"] == 4


def test_a_stop_sequence_finishes_with_stop(mock_provider: MockProviderProcess) -> None:
    payload = {**HI, "stop": [" word3"]}
    answer = adapter.chat_response(
        send(adapter.chat_request(target(mock_provider), payload, stream=False)).json(),
        model="m",
    )
    assert answer["choices"][0]["message"]["content"] == "word0 word1 word2"
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_a_stream_decodes_to_canonical_chunks_with_usage(
    mock_provider: MockProviderProcess,
) -> None:
    chunks, usage = stream_over_http(
        adapter.chat_request(target(mock_provider), {**HI, "stream": True}, stream=True)
    )
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text(chunks) == " ".join(f"word{i}" for i in range(16))
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
    assert len({c["id"] for c in chunks}) == 1
    assert (usage.input_tokens, usage.output_tokens) == (5, 16)


def test_a_tool_call_round_trip_keeps_the_call_id(mock_provider: MockProviderProcess) -> None:
    mock_provider.reset()
    payload = {**HI, "tools": [WEATHER_TOOL], "tool_choice": "required"}
    answer = adapter.chat_response(
        send(adapter.chat_request(target(mock_provider), payload, stream=False)).json(),
        model="m",
    )
    message = answer["choices"][0]["message"]
    call = message["tool_calls"][0]
    assert call["id"].startswith("get_weather_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"mock"}'}
    assert message["content"] == "I will use get_weather."
    assert answer["choices"][0]["finish_reason"] == "tool_calls"

    follow_up = {
        **payload,
        "tool_choice": "auto",
        "messages": [
            *payload["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
        ],
    }
    response = send(adapter.chat_request(target(mock_provider), follow_up, stream=False))
    assert response.status_code == 200, response.text
    final = adapter.chat_response(response.json(), model="m")
    assert final["choices"][0]["finish_reason"] == "stop"
    sent = mock_provider.requests(1)[0]["body"]["messages"]
    assert sent[1] == {
        "role": "assistant",
        "tool_calls": [call],
        "tool_plan": "I will use get_weather.",
    }
    assert sent[2] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}


def test_a_streamed_tool_call_arrives_as_tool_call_deltas(
    mock_provider: MockProviderProcess,
) -> None:
    payload = {**HI, "tools": [WEATHER_TOOL], "stream": True}
    chunks, usage = stream_over_http(
        adapter.chat_request(target(mock_provider), payload, stream=True)
    )
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["id"].startswith("get_weather_")
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"mock"}'
    assert text(chunks) == "I will use get_weather."
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert usage.output_tokens == 7


def test_a_tool_choice_of_none_gets_text(mock_provider: MockProviderProcess) -> None:
    payload = {**HI, "tools": [WEATHER_TOOL], "tool_choice": "none"}
    answer = adapter.chat_response(
        send(adapter.chat_request(target(mock_provider), payload, stream=False)).json(),
        model="m",
    )
    assert "tool_calls" not in answer["choices"][0]["message"]


def test_an_image_input_reaches_cohere_as_an_image_url_part(
    mock_provider: MockProviderProcess,
) -> None:
    mock_provider.reset()
    parts = [
        {"type": "text", "text": "what is it"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "high"}},
    ]
    payload = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    response = send(adapter.chat_request(target(mock_provider), payload, stream=False))
    assert response.status_code == 200, response.text
    assert mock_provider.requests(1)[0]["body"]["messages"][0]["content"] == parts


def test_an_injected_rate_limit_answers_in_cohere_envelope_with_retry_after(
    mock_provider: MockProviderProcess,
) -> None:
    mock_provider.reset()
    mock_provider.add_rule(match={"path": "/v2/chat"}, status=429, retry_after=1, times=1)
    response = send(adapter.chat_request(target(mock_provider), HI, stream=False))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert set(response.json()) == {"id", "message"}
    assert response.json()["message"].startswith("You are using a Trial key")


def test_the_mock_refuses_requests_cohere_would_refuse(mock_provider: MockProviderProcess) -> None:
    url = f"{mock_provider.url}/v2/chat"
    auth = {"authorization": "Bearer k"}
    anonymous = httpx.post(url, json={"model": "c", "messages": HI["messages"]})
    assert anonymous.status_code == 401 and set(anonymous.json()) == {"id", "message"}
    openai_shaped = httpx.post(url, json={**HI, "top_p": 0.5}, headers=auth)
    assert openai_shaped.status_code == 400
    assert "top_p" in openai_shaped.json()["message"]
    bad_role = httpx.post(
        url, json={"model": "c", "messages": [{"role": "function", "content": "x"}]}, headers=auth
    )
    assert bad_role.status_code == 400


def test_an_interrupted_stream_surfaces_as_a_bad_gateway(
    mock_provider: MockProviderProcess,
) -> None:
    request = adapter.chat_request(target(mock_provider), {**HI, "stream": True}, stream=True)
    with pytest.raises(GatewayError) as error:
        adapter_helpers.stream_over_http(
            adapter, request, headers={"x-mock-behaviour": '{"malformed": "sse"}'}
        )
    assert error.value.code == "upstream_invalid_response"


def test_embeddings_over_http(mock_provider: MockProviderProcess) -> None:
    request = adapter.embeddings_request(
        Target(mock_provider.url, "k", "embed-v4.0", {}),
        {"model": "text-embedding-3-small", "input": ["alpha beta", "gamma"], "dimensions": 4},
    )
    response = send(request)
    assert response.status_code == 200, response.text
    answer = adapter.embeddings_response(response.json(), model="text-embedding-3-small")
    assert [len(item["embedding"]) for item in answer["data"]] == [4, 4]
    assert answer["usage"]["prompt_tokens"] == 3
