"""The Bedrock adapter against the mock Bedrock runtime, over real HTTP.

The mock recomputes every Signature Version 4 signature with the secret of
the access key it was given, so these requests pass only when signed right.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from proxy.errors import GatewayError
from proxy.mock_provider import bedrock as mock_bedrock
from proxy.providers import sigv4
from proxy.providers.base import Target
from proxy.providers.bedrock import BedrockAdapter
from tests.adapter_helpers import send, stream_over_http
from tests.processes import MockProviderProcess

adapter = BedrockAdapter()
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LONG_TERM = f"{mock_bedrock.ACCESS_KEY_ID}:{mock_bedrock.SECRET_ACCESS_KEY}"
TEMPORARY = (
    f"{mock_bedrock.TEMPORARY_ACCESS_KEY_ID}:{mock_bedrock.TEMPORARY_SECRET_ACCESS_KEY}:"
    f"{mock_bedrock.SESSION_TOKEN}"
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
    "rkJggg=="
)


@pytest.fixture
def mock(mock_provider: MockProviderProcess) -> Iterator[MockProviderProcess]:
    mock_provider.reset()
    yield mock_provider


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _target(mock: MockProviderProcess, key: str = LONG_TERM, **options: str) -> Target:
    return Target(
        base_url=f"{mock.url}/bedrock",
        api_key=key,
        model=MODEL,
        options={"region": "us-east-1", **options},
    )


def _payload(text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [{"role": "user", "content": text}], **extra}


def _complete(http: httpx.Client, target: Target, payload: dict[str, Any]) -> dict[str, Any]:
    response = send(client=http, request=adapter.chat_request(target, payload, stream=False))
    assert response.status_code == 200, response.text
    return adapter.chat_response(response.json(), model="claude")


def _stream(
    http: httpx.Client,
    target: Target,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    request = adapter.chat_request(target, payload, stream=True)
    return stream_over_http(adapter, request, model="claude", client=http, headers=headers)


def _deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]


def test_a_signed_completion_reaches_the_mock_and_comes_back(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    payload = {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        "max_tokens": 4,
    }
    answer = _complete(http, _target(mock), payload)
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "word0 word1 word2 word3",
    }
    assert answer["choices"][0]["finish_reason"] == "length"
    # The mock's token model: 2 + 3 words, 3 per message.
    assert answer["usage"]["prompt_tokens"] == 7
    assert answer["usage"]["completion_tokens"] == 4
    [recorded] = mock.requests()
    assert recorded["path"] == "/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
    assert recorded["body"] == {
        "messages": [{"role": "user", "content": [{"text": "Hello there"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 4},
    }
    assert recorded["headers"]["authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential={mock_bedrock.ACCESS_KEY_ID}/"
    )


def test_a_stream_signed_with_temporary_credentials_decodes_to_chunks(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    chunks, usage = _stream(http, _target(mock, TEMPORARY), _payload(stop=[" word3"]))
    assert _deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "word0"},
        {"content": " word1"},
        {"content": " word2"},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert (usage.input_tokens, usage.output_tokens) == (5, 3)
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    recorded = mock.requests()[-1]
    assert recorded["path"].endswith("/converse-stream")
    assert recorded["headers"]["x-amz-security-token"] == mock_bedrock.SESSION_TOKEN


def test_a_bedrock_api_key_is_accepted_as_a_bearer_token(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    answer = _complete(http, _target(mock, mock_bedrock.API_KEY), _payload())
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert mock.requests()[-1]["api_key"] == mock_bedrock.API_KEY


def test_a_tool_call_round_trip_keeps_the_tool_use_id(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    target = _target(mock)
    first = _complete(http, target, _payload("Weather in Paris?", tools=[WEATHER]))
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    [call] = message["tool_calls"]
    assert call["id"].startswith("tooluse_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"mock"}'}
    follow_up = {
        "model": "claude",
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees"},
        ],
    }
    second = _complete(http, target, follow_up)
    assert second["choices"][0]["finish_reason"] == "stop"
    assert second["choices"][0]["message"]["content"].startswith("word0")
    sent = mock.requests()[-1]["body"]["messages"]
    assert sent[1]["content"] == [
        {"toolUse": {"toolUseId": call["id"], "name": "get_weather", "input": {"city": "mock"}}}
    ]
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": call["id"], "content": [{"text": "18 degrees"}]}}
    ]


def test_a_streamed_tool_call_arrives_in_fragments(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    payload = _payload(
        "Weather?",
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    chunks, _ = _stream(http, _target(mock), payload)
    deltas = _deltas(chunks)
    start = deltas[1]["tool_calls"][0]
    assert start["id"].startswith("tooluse_")
    assert start["function"] == {"name": "get_weather", "arguments": ""}
    fragments = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1])
    assert orjson.loads(fragments) == {"city": "mock"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_image_travels_as_inline_bytes(mock: MockProviderProcess, http: httpx.Client) -> None:
    content = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    answer = _complete(
        http, _target(mock), _payload() | {"messages": [{"role": "user", "content": content}]}
    )
    assert answer["choices"][0]["finish_reason"] == "stop"
    image = mock.requests()[-1]["body"]["messages"][0]["content"][1]["image"]
    assert image["format"] == "png"
    assert base64.b64decode(image["source"]["bytes"]).startswith(b"\x89PNG")


def test_a_json_schema_answer_format_is_sent_as_output_config(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    _complete(
        http,
        _target(mock),
        _payload(
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
        ),
    )
    output = mock.requests()[-1]["body"]["outputConfig"]
    assert orjson.loads(output["textFormat"]["structure"]["jsonSchema"]["schema"]) == schema


def test_the_content_filter_stop_reason_maps_to_content_filter(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    answer = _complete(http, _target(mock), _payload("tell me [mock:content_filtered]"))
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert answer["usage"]["completion_tokens"] == 1


def _error(response: httpx.Response) -> tuple[int, str, str]:
    return (
        response.status_code,
        response.headers.get("x-amzn-ErrorType", "").split(":")[0],
        response.json()["message"],
    )


@pytest.mark.parametrize(
    ("key", "error_type"),
    [
        (f"{mock_bedrock.ACCESS_KEY_ID}:wrong-secret", "InvalidSignatureException"),
        ("AKIAUNKNOWN000000000:whatever", "UnrecognizedClientException"),
        (
            f"{mock_bedrock.TEMPORARY_ACCESS_KEY_ID}:{mock_bedrock.TEMPORARY_SECRET_ACCESS_KEY}",
            "UnrecognizedClientException",
        ),
        ("ABSKbm90LXRoZS1yaWdodC1rZXk=", "AccessDeniedException"),
    ],
)
def test_the_mock_refuses_bad_credentials_as_bedrock_does(
    mock: MockProviderProcess, http: httpx.Client, key: str, error_type: str
) -> None:
    response = send(
        client=http, request=adapter.chat_request(_target(mock, key), _payload(), stream=False)
    )
    status, kind, message = _error(response)
    assert (status, kind) == (403, error_type)
    assert message


def test_the_mock_refuses_a_request_changed_after_signing(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    request = adapter.chat_request(_target(mock), _payload(), stream=False)
    tampered = (request.body or b"").replace(b"Hello", b"Howdy")
    response = http.post(request.url, headers=request.headers, content=tampered)
    assert _error(response) == (403, "InvalidSignatureException", mock_bedrock.INVALID_SIGNATURE)
    other_model = request.url.replace("v1:0", "v2:0")
    response = http.post(other_model, headers=request.headers, content=request.body)
    assert response.status_code == 403


def test_the_mock_refuses_unsigned_and_stale_requests(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    url = f"{mock.url}/bedrock/model/m/converse"
    body = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    missing = http.post(url, content=body, headers={"content-type": "application/json"})
    assert _error(missing)[:2] == (403, "MissingAuthenticationTokenException")
    stale = sigv4.sign(
        method="POST",
        url=url,
        headers={"content-type": "application/json"},
        body=body,
        credentials=sigv4.parse_credentials(LONG_TERM),
        region="us-east-1",
        service="bedrock",
        now=datetime.now(UTC) - timedelta(minutes=20),
    )
    expired = http.post(url, content=body, headers=stale)
    assert _error(expired)[:2] == (403, "InvalidSignatureException")
    assert "Signature expired" in _error(expired)[2]
    wrong_service = sigv4.sign(
        method="POST",
        url=url,
        headers={},
        body=body,
        credentials=sigv4.parse_credentials(LONG_TERM),
        region="us-east-1",
        service="s3",
    )
    assert http.post(url, content=body, headers=wrong_service).status_code == 403


def test_the_mock_validates_converse_bodies(mock: MockProviderProcess, http: httpx.Client) -> None:
    target = _target(mock)
    cases = [
        (
            {"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]},
            "must start with a user",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"text": "a"}]},
                    {"role": "user", "content": [{"text": "b"}]},
                ]
            },
            "alternate",
        ),
        ({"messages": [{"role": "user", "content": [{"text": " "}]}]}, "blank"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"toolResult": {"toolUseId": "t", "content": []}}],
                    }
                ]
            },
            "toolConfig field must be defined",
        ),
        ({"messages": [{"role": "user", "content": [{"text": "a"}]}], "prompt": "x"}, "extraneous"),
        (
            {
                "messages": [{"role": "user", "content": [{"text": "a"}]}],
                "inferenceConfig": {"temperature": 3},
            },
            "temperature",
        ),
    ]
    for body, words in cases:
        response = send(client=http, request=adapter.native_request(target, body, stream=False))
        status, kind, message = _error(response)
        assert (status, kind) == (400, "ValidationException"), body
        assert words in message


def test_an_injected_throttle_is_bedrock_s_throttling_exception(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    mock.add_rule(match={"path": "/converse"}, status=429, retry_after=2, times=1)
    response = send(
        client=http, request=adapter.chat_request(_target(mock), _payload(), stream=False)
    )
    assert _error(response) == (
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    )
    assert response.headers["retry-after"] == "2"
    assert (
        send(
            client=http, request=adapter.chat_request(_target(mock), _payload(), stream=False)
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("name", "status"),
    [("throttlingException", 429), ("modelStreamErrorException", 502)],
)
def test_an_exception_inside_the_stream_becomes_an_error(
    mock: MockProviderProcess, http: httpx.Client, name: str, status: int
) -> None:
    with pytest.raises(GatewayError) as caught:
        _stream(http, _target(mock), _payload(f"go [mock:stream_exception={name}]"))
    assert caught.value.status == status
    assert name in caught.value.message


def test_a_corrupt_stream_is_an_unreadable_answer(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    with pytest.raises(GatewayError) as caught:
        _stream(
            http, _target(mock), _payload(), headers={"x-mock-behaviour": '{"malformed": "sse"}'}
        )
    assert (caught.value.status, caught.value.code) == (502, "upstream_invalid_response")


def test_the_recorded_body_hash_is_what_was_signed(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    request = adapter.chat_request(_target(mock), _payload(), stream=False)
    assert send(client=http, request=request).status_code == 200
    recorded = mock.requests()[-1]
    assert (
        recorded["headers"]["x-amz-content-sha256"]
        == hashlib.sha256(request.body or b"").hexdigest()
    )


def test_a_stalled_stream_delivers_its_first_tokens_then_hangs(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    mock.add_rule(match={"path": "/converse-stream"}, stall_after_tokens=2, ttft_ms=50)
    request = adapter.chat_request(_target(mock), _payload(), stream=True)
    decoder = adapter.stream_decoder(model="claude")
    chunks: list[dict[str, Any]] = []
    with (
        pytest.raises(httpx.ReadTimeout),
        http.stream(
            request.method,
            request.url,
            headers=request.headers,
            content=request.body,
            timeout=httpx.Timeout(10, read=1),
        ) as response,
    ):
        for piece in response.iter_raw():
            chunks += decoder.feed(piece)
    assert _deltas(chunks) == [
        {"role": "assistant", "content": ""},
        {"content": "word0"},
        {"content": " word1"},
    ]


def test_more_credentials_can_be_given_to_the_mock_by_environment(
    monkeypatch: pytest.MonkeyPatch, http: httpx.Client
) -> None:
    extra = "AKIAEXTRAKEY00000003:extra/secret"
    monkeypatch.setenv("MOCK_BEDROCK_CREDENTIALS", f"{extra}, ABSKZXh0cmEta2V5")
    server = MockProviderProcess()
    try:
        for key in (extra, "ABSKZXh0cmEta2V5", LONG_TERM):
            request = adapter.chat_request(_target(server, key), _payload(), stream=False)
            assert send(client=http, request=request).status_code == 200, key
    finally:
        server.close()


def test_an_embedding_comes_from_the_mock_titan_model(
    mock: MockProviderProcess, http: httpx.Client
) -> None:
    target = Target(
        base_url=f"{mock.url}/bedrock",
        api_key=LONG_TERM,
        model="amazon.titan-embed-text-v2:0",
        options={"region": "us-east-1"},
    )
    request = adapter.embeddings_request(
        target, {"model": "e", "input": "two words", "dimensions": 256}
    )
    response = send(client=http, request=request)
    assert response.status_code == 200, response.text
    result = adapter.embeddings_response(response.json(), model="e")
    [item] = result["data"]
    assert len(item["embedding"]) == 256
    assert abs(sum(v * v for v in item["embedding"]) - 1) < 1e-3
    assert result["usage"]["prompt_tokens"] == 2
    bad = adapter.embeddings_request(target, {"model": "e", "input": "x", "dimensions": 100})
    assert _error(send(client=http, request=bad))[:2] == (400, "ValidationException")
