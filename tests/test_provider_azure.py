"""The Azure OpenAI adapter: golden translations, and real HTTP against the mock resource."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from proxy.errors import GatewayError
from proxy.providers import REGISTRY
from proxy.providers.azure import AzureOpenAIAdapter
from proxy.providers.base import Target, UpstreamRequest
from tests import adapter_helpers
from tests.adapter_helpers import decode_in_cuts, send
from tests.processes import MockProviderProcess

adapter = AzureOpenAIAdapter()


def golden(name: str) -> list[dict[str, Any]]:
    return adapter_helpers.golden("azure", name)


def decode(data: bytes, size: int) -> list[dict[str, Any]]:
    return decode_in_cuts(adapter.stream_decoder(model="route-model"), data, size)


def stream_over_http(request: UpstreamRequest) -> tuple[list[dict[str, Any]], Any]:
    return adapter_helpers.stream_over_http(adapter, request, chunk_size=5)


def target(mock: MockProviderProcess, **options: str) -> Target:
    return Target(f"{mock.url}/azure", "azure-key-0001", "mock-gpt", options)


HI = {"model": "gpt-4o", "messages": [{"role": "user", "content": "say hi"}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# -- golden translations ----------------------------------------------------------------


def test_it_is_registered_as_an_openai_wire_provider() -> None:
    assert isinstance(REGISTRY["azure"], AzureOpenAIAdapter)
    assert REGISTRY["azure"].wire == "openai"
    assert set(REGISTRY["azure"].options) == {"api_version", "auth"}


@pytest.mark.parametrize("case", golden("requests"), ids=lambda c: c["name"])
def test_it_addresses_each_request_as_golden(case: dict[str, Any]) -> None:
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
    # Clients of the same wire are relayed the same way.
    assert (
        adapter.native_request(
            Target(spec["base_url"], "secret-key", spec["model"], spec["options"]),
            case["request"],
            stream=case["stream"],
        )
        == request
    )


@pytest.mark.parametrize("case", golden("answers"), ids=lambda c: c["name"])
def test_it_reads_each_answer_as_golden(case: dict[str, Any]) -> None:
    assert adapter.chat_response(case["answer"], model="route-model") == case["expected"]


@pytest.mark.parametrize("size", [1, 3, 64, 1 << 20])
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
    assert chunks == case["expected"]
    usage = decoder.usage
    assert (None if usage is None else usage.input_tokens) == (
        case["usage"] and case["usage"]["input_tokens"]
    )
    if usage is not None:
        assert (usage.output_tokens, usage.cached_tokens) == (
            case["usage"]["output_tokens"],
            case["usage"]["cached_tokens"],
        )


def test_the_stream_starts_with_the_assistant_role_despite_the_prompt_filter_chunk() -> None:
    case = golden("streams")[0]
    assert case["stream"].startswith('data: {"choices":[]')
    first = decode(case["stream"].encode(), 1)[0]
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_an_error_event_in_the_stream_is_a_bad_gateway() -> None:
    data = b'data: {"error": {"code": "server_error", "message": "The server had an error"}}\n\n'
    with pytest.raises(GatewayError) as error:
        decode(data, 2)
    assert error.value.status == 502
    assert "The server had an error" in error.value.message


def test_an_answer_without_choices_is_a_bad_gateway() -> None:
    with pytest.raises(GatewayError) as error:
        adapter.chat_response({"error": {"code": "x"}}, model="m")
    assert error.value.status == 502


def test_an_unknown_auth_mode_is_refused() -> None:
    with pytest.raises(GatewayError) as error:
        adapter.chat_request(Target("https://r", "k", "d", {"auth": "basic"}), HI, stream=False)
    assert error.value.status == 502


# -- over HTTP against the mock resource -------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"api_version": "2024-06-01"}, {"api_version": "v1"}, {"auth": "bearer"}],
    ids=["default", "pinned", "v1", "entra"],
)
def test_a_completion_reads_back_without_azure_annotations(
    mock_provider: MockProviderProcess, options: dict[str, str]
) -> None:
    mock_provider.reset()
    request = adapter.chat_request(target(mock_provider, **options), HI, stream=False)
    response = send(request)
    assert response.status_code == 200, response.text
    raw = response.json()
    assert "prompt_filter_results" in raw and "content_filter_results" in raw["choices"][0]

    answer = adapter.chat_response(raw, model="route-model")
    assert "prompt_filter_results" not in answer
    assert "content_filter_results" not in answer["choices"][0]
    assert answer["choices"][0]["message"]["content"].startswith("word0 word1")
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == 5  # "say hi" + 3 per message

    seen = mock_provider.requests(1)[0]
    if options.get("api_version") == "v1":
        assert seen["path"] == "/azure/openai/v1/chat/completions"
        assert seen["query"] == ""
    else:
        assert seen["path"] == "/azure/openai/deployments/mock-gpt/chat/completions"
        assert seen["query"] == f"api-version={options.get('api_version', '2024-10-21')}"
    if options.get("auth") == "bearer":
        assert seen["headers"]["authorization"] == "Bearer azure-key-0001"
        assert "api-key" not in seen["headers"]
    else:
        assert seen["headers"]["api-key"] == "azure-key-0001"
    assert seen["body"]["model"] == "mock-gpt"


def test_a_stream_decodes_to_canonical_chunks_with_usage(
    mock_provider: MockProviderProcess,
) -> None:
    payload = {**HI, "stream": True, "stream_options": {"include_usage": True}}
    chunks, usage = stream_over_http(
        adapter.chat_request(target(mock_provider), payload, stream=True)
    )
    assert chunks[0]["choices"][0]["delta"] == {
        "content": "",
        "refusal": None,
        "role": "assistant",
    }
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == " ".join(f"word{i}" for i in range(16))
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
    assert all("content_filter_results" not in c for ch in chunks for c in ch["choices"])
    assert (usage.input_tokens, usage.output_tokens) == (5, 16)


def test_a_tool_call_keeps_its_id_streamed_or_not(mock_provider: MockProviderProcess) -> None:
    payload = {**HI, "tools": [WEATHER_TOOL]}
    answer = adapter.chat_response(
        send(adapter.chat_request(target(mock_provider), payload, stream=False)).json(),
        model="route-model",
    )
    call = answer["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"mock"}'}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"

    chunks, _ = stream_over_http(
        adapter.chat_request(target(mock_provider), {**payload, "stream": True}, stream=True)
    )
    head = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert head["id"].startswith("call_") and head["function"]["arguments"] == ""
    arguments = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for c in chunks
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    )
    assert arguments == '{"city":"mock"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_image_input_goes_as_sent(mock_provider: MockProviderProcess) -> None:
    mock_provider.reset()
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    payload = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "what"}, image]}],
    }
    response = send(adapter.chat_request(target(mock_provider), payload, stream=False))
    assert response.status_code == 200
    assert mock_provider.requests(1)[0]["body"]["messages"][0]["content"][1] == image


def test_an_injected_rate_limit_answers_in_azure_envelope_with_retry_after(
    mock_provider: MockProviderProcess,
) -> None:
    mock_provider.reset()
    mock_provider.add_rule(match={"path": "/azure/"}, status=429, retry_after=2, times=1)
    response = send(adapter.chat_request(target(mock_provider), HI, stream=False))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "429" and "rate limit" in error["message"]
    assert send(adapter.chat_request(target(mock_provider), HI, stream=False)).status_code == 200


def test_the_mock_checks_the_api_version_key_and_deployment_like_azure(
    mock_provider: MockProviderProcess,
) -> None:
    base = f"{mock_provider.url}/azure/openai/deployments"
    key = {"api-key": "k"}
    missing = httpx.post(f"{base}/mock-gpt/chat/completions", json=HI, headers=key)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": {"code": "404", "message": "Resource not found"}},
    )
    old = httpx.post(
        f"{base}/mock-gpt/chat/completions?api-version=2019-01-01", json=HI, headers=key
    )
    assert old.status_code == 400 and old.json()["error"]["code"] == "BadRequest"
    anonymous = httpx.post(f"{base}/mock-gpt/chat/completions?api-version=2024-10-21", json=HI)
    assert (
        anonymous.status_code == 401 and "subscription key" in anonymous.json()["error"]["message"]
    )
    unknown = httpx.post(
        f"{base}/nope/chat/completions?api-version=2024-10-21", json=HI, headers=key
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "DeploymentNotFound"


def test_a_refused_prompt_is_a_400_content_filter_error(mock_provider: MockProviderProcess) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "[mock:content_filter]"}]}
    response = send(adapter.chat_request(target(mock_provider), payload, stream=False))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "content_filter"
    assert error["innererror"]["code"] == "ResponsibleAIPolicyViolation"


def test_a_filtered_answer_finishes_with_content_filter(mock_provider: MockProviderProcess) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "[mock:filter_output]"}]}
    answer = adapter.chat_response(
        send(adapter.chat_request(target(mock_provider), payload, stream=False)).json(),
        model="route-model",
    )
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert answer["choices"][0]["message"]["content"] == "word0"

    chunks, _ = stream_over_http(
        adapter.chat_request(target(mock_provider), {**payload, "stream": True}, stream=True)
    )
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "content_filter"


def test_an_interrupted_stream_surfaces_as_a_bad_gateway(
    mock_provider: MockProviderProcess,
) -> None:
    request = adapter.chat_request(target(mock_provider), {**HI, "stream": True}, stream=True)
    with pytest.raises(GatewayError) as error:
        adapter_helpers.stream_over_http(
            adapter, request, headers={"x-mock-behaviour": '{"malformed": "sse"}'}
        )
    assert error.value.code == "upstream_invalid_response"


def test_the_official_azure_client_accepts_the_mock(mock_provider: MockProviderProcess) -> None:
    # The mock is only useful if Azure's own client reads it as it reads Azure.
    client = openai.AzureOpenAI(
        azure_endpoint=f"{mock_provider.url}/azure",
        api_key="k",
        api_version="2024-10-21",
        max_retries=0,
    )
    completion = client.chat.completions.create(model="mock-gpt", messages=HI["messages"])
    assert completion.choices[0].message.content.startswith("word0")
    stream = client.chat.completions.create(
        model="mock-gpt",
        messages=HI["messages"],
        stream=True,
        stream_options={"include_usage": True},
    )
    events = list(stream)
    assert events[0].choices == []  # the prompt-filter chunk
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 16
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="absent", messages=HI["messages"])
