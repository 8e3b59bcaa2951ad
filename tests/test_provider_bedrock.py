"""The Bedrock adapter's translations, pinned by golden files in both directions.

Requests are also checked against the Converse request shape of botocore's
service model (AWS's own description of the API); streams are encoded as
AWS event streams, read back by botocore's parser too, and fed to the
decoder in awkward cuts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import botocore.session
import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.validate import ParamValidator

from proxy import upstream
from proxy.errors import GatewayError
from proxy.mock_provider.bedrock import event, exception, frame
from proxy.providers import REGISTRY
from proxy.providers.base import Target
from proxy.providers.bedrock import BedrockAdapter, converse_request
from tests.adapter_helpers import decode_in_cuts

GOLDEN = Path(__file__).parent / "golden" / "bedrock"
REQUESTS = json.loads((GOLDEN / "requests.json").read_text())
RESPONSES = json.loads((GOLDEN / "responses.json").read_text())
STREAMS = json.loads((GOLDEN / "streams.json").read_text())

adapter = BedrockAdapter()
_model = botocore.session.get_session().get_service_model("bedrock-runtime")


def _normalised(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "id": "ID", "created": 0}


def _stream_bytes(events: list[list[Any]]) -> bytes:
    return b"".join(event(kind, payload) for kind, payload in events)


def _decode(data: bytes, cut: int) -> list[dict[str, Any]]:
    return decode_in_cuts(adapter.stream_decoder(model="claude"), data, cut)


def test_the_adapter_is_registered_for_bedrock_providers() -> None:
    assert isinstance(REGISTRY["bedrock"], BedrockAdapter)
    assert REGISTRY["bedrock"].stream_content_type == "application/vnd.amazon.eventstream"
    assert set(REGISTRY["bedrock"].options) == {"region"}


@pytest.mark.parametrize("case", REQUESTS, ids=[c["name"] for c in REQUESTS])
def test_it_translates_canonical_requests_to_converse(case: dict[str, Any]) -> None:
    assert converse_request(case["canonical"]) == case["bedrock"]


@pytest.mark.parametrize("case", REQUESTS, ids=[c["name"] for c in REQUESTS])
def test_its_requests_fit_the_converse_shape_of_the_aws_service_model(
    case: dict[str, Any],
) -> None:
    params = {"modelId": "anthropic.claude-3-5-sonnet-20240620-v1:0", **case["bedrock"]}
    for operation in ("Converse", "ConverseStream"):
        shape = _model.operation_model(operation).input_shape
        report = ParamValidator().validate(params, shape)
        assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": "sometimes",
            },
            "tool_choice",
        ),
    ],
)
def test_it_refuses_request_features_converse_lacks(payload: dict[str, Any], param: str) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **payload}
    with pytest.raises(GatewayError) as caught:
        converse_request(request)
    assert caught.value.status == 400
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
            },
            "images by URL",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
                ],
            },
            "image/bmp",
        ),
        ({"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}, "input_audio"),
        (
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{x"}}
                ],
            },
            "not JSON",
        ),
        ({"role": "critic", "content": "hm"}, "critic"),
    ],
)
def test_it_refuses_message_content_converse_cannot_carry(
    message: dict[str, Any], words: str
) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}, message]}
    with pytest.raises(GatewayError) as caught:
        converse_request(request)
    assert caught.value.status == 400
    assert words in caught.value.message


@pytest.mark.parametrize("case", RESPONSES, ids=[c["name"] for c in RESPONSES])
def test_it_translates_converse_answers_to_canonical_completions(case: dict[str, Any]) -> None:
    answer = adapter.chat_response(case["bedrock"], model="claude")
    assert answer["id"].startswith("chatcmpl-")
    assert _normalised(answer) == case["canonical"]


@pytest.mark.parametrize("answer", [None, [], {"output": {}}, {"output": {"message": {}}}])
def test_it_calls_an_answer_without_a_message_unreadable(answer: Any) -> None:
    with pytest.raises(GatewayError) as caught:
        adapter.chat_response(answer, model="claude")
    assert (caught.value.status, caught.value.code) == (502, "upstream_invalid_response")


@pytest.mark.parametrize("case", STREAMS, ids=[c["name"] for c in STREAMS])
@pytest.mark.parametrize("cut", [1, 3, 7, 64, 1 << 20])
def test_it_translates_converse_streams_to_canonical_chunks(case: dict[str, Any], cut: int) -> None:
    chunks = _decode(_stream_bytes(case["events"]), cut)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert [_normalised(chunk) for chunk in chunks] == case["chunks"]


@pytest.mark.parametrize("case", STREAMS, ids=[c["name"] for c in STREAMS])
def test_the_golden_streams_are_event_streams_botocore_reads(case: dict[str, Any]) -> None:
    buffer = EventStreamBuffer()
    buffer.add_data(_stream_bytes(case["events"]))
    messages = list(buffer)
    assert [m.headers[":event-type"] for m in messages] == [kind for kind, _ in case["events"]]
    for message, (_, payload) in zip(messages, case["events"], strict=True):
        assert message.headers[":message-type"] == "event"
        decoded = orjson.loads(message.payload)
        decoded.pop("p")
        assert decoded == payload


def test_a_stream_decoder_sets_usage_once_metadata_arrives() -> None:
    case = next(c for c in STREAMS if c["name"] == "text")
    decoder = adapter.stream_decoder(model="claude")
    data = _stream_bytes(case["events"][:-1])
    decoder.feed(data)
    assert decoder.usage is None
    decoder.feed(_stream_bytes(case["events"][-1:]))
    decoder.finish()
    assert decoder.usage is not None
    assert (decoder.usage.input_tokens, decoder.usage.output_tokens) == (13, 2)
    assert decoder.usage.cached_tokens == 5


def test_chunks_come_out_as_soon_as_their_message_is_complete() -> None:
    decoder = adapter.stream_decoder(model="claude")
    start = event("messageStart", {"role": "assistant"})
    delta = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    first = decoder.feed(start + delta[:-1])
    assert [c["choices"][0]["delta"] for c in first] == [{"role": "assistant", "content": ""}]
    assert [c["choices"][0]["delta"] for c in decoder.feed(delta[-1:])] == [{"content": "hi"}]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("throttlingException", 429, "upstream_rate_limited"),
        ("modelStreamErrorException", 502, "upstream_invalid_response"),
        ("validationException", 400, "upstream_invalid_request"),
        ("internalServerException", 502, "upstream_error"),
        ("serviceUnavailableException", 503, "upstream_error"),
    ],
)
def test_an_exception_message_in_the_stream_is_an_error(name: str, status: int, code: str) -> None:
    decoder = adapter.stream_decoder(model="claude")
    decoder.feed(event("messageStart", {"role": "assistant"}))
    with pytest.raises(GatewayError) as caught:
        decoder.feed(exception(name, "The model failed to stream."))
    assert (caught.value.status, caught.value.code) == (status, code)
    assert "The model failed to stream." in caught.value.message


def test_an_error_message_in_the_stream_is_an_unreadable_answer() -> None:
    decoder = adapter.stream_decoder(model="claude")
    message = frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    with pytest.raises(GatewayError) as caught:
        decoder.feed(message)
    assert caught.value.status == 502
    assert "InternalFailure: boom" in caught.value.message


def test_a_corrupt_message_makes_the_stream_unreadable() -> None:
    broken = bytearray(event("messageStart", {"role": "assistant"}))
    broken[20] ^= 0x01
    with pytest.raises(GatewayError) as caught:
        adapter.stream_decoder(model="claude").feed(bytes(broken))
    assert caught.value.code == "upstream_invalid_response"
    assert "checksum" in caught.value.message


@pytest.mark.parametrize(
    "events",
    [
        [["messageStart", {"role": "assistant"}]],
        [
            ["messageStart", {"role": "assistant"}],
            ["contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "a"}}],
        ],
    ],
)
def test_a_stream_ending_before_message_stop_is_unreadable(events: list[list[Any]]) -> None:
    decoder = adapter.stream_decoder(model="claude")
    decoder.feed(_stream_bytes(events))
    with pytest.raises(GatewayError) as caught:
        decoder.finish()
    assert "messageStop" in caught.value.message


def test_a_stream_cut_inside_a_message_is_unreadable() -> None:
    case = STREAMS[0]
    data = _stream_bytes(case["events"])
    decoder = adapter.stream_decoder(model="claude")
    decoder.feed(data[:-5])
    with pytest.raises(GatewayError) as caught:
        decoder.finish()
    assert "inside a message" in caught.value.message


def test_a_tool_delta_without_its_start_is_unreadable() -> None:
    decoder = adapter.stream_decoder(model="claude")
    orphan = event(
        "contentBlockDelta", {"contentBlockIndex": 3, "delta": {"toolUse": {"input": "{"}}}
    )
    with pytest.raises(GatewayError):
        decoder.feed(event("messageStart", {"role": "assistant"}) + orphan)


def _target(**options: str) -> Target:
    return Target(
        base_url="https://bedrock-runtime.eu-west-3.amazonaws.com",
        api_key="AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        model="anthropic.claude-3-5-sonnet-20240620-v1:0",
        options=options,
    )


def test_requests_go_to_the_model_s_converse_paths_with_the_id_in_normal_form() -> None:
    payload = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    plain = adapter.chat_request(_target(), payload, stream=False)
    streamed = adapter.chat_request(_target(), payload, stream=True)
    base = "https://bedrock-runtime.eu-west-3.amazonaws.com/model/"
    assert plain.url == base + "anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
    assert streamed.url == base + "anthropic.claude-3-5-sonnet-20240620-v1:0/converse-stream"
    assert streamed.headers["accept"] == "application/vnd.amazon.eventstream"
    assert orjson.loads(plain.body or b"") == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}]
    }
    profile = Target(
        base_url="https://bedrock-runtime.us-east-1.amazonaws.com/",
        api_key="AKID:SECRET",
        model="arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude",
    )
    assert adapter.chat_request(profile, payload, stream=False).url == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile%2F"
        "us.anthropic.claude/converse"
    )


def test_requests_are_signed_for_the_region_of_the_endpoint_or_the_option() -> None:
    payload = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    from_host = adapter.chat_request(_target(), payload, stream=False).headers["authorization"]
    assert "/eu-west-3/bedrock/aws4_request" in from_host
    chosen = adapter.chat_request(_target(region="us-west-2"), payload, stream=False)
    assert "/us-west-2/bedrock/aws4_request" in chosen.headers["authorization"]
    assert chosen.headers["x-amz-content-sha256"] == hashlib.sha256(chosen.body or b"").hexdigest()


def test_a_provider_without_a_known_region_is_a_configuration_error() -> None:
    target = Target(base_url="http://127.0.0.1:9/bedrock", api_key="AKID:SECRET", model="m")
    payload = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(GatewayError) as caught:
        adapter.chat_request(target, payload, stream=False)
    assert caught.value.status == 502
    assert "region" in caught.value.message


@pytest.mark.parametrize(
    "key", ["ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl", "bedrock-api-key-YmVkcm9jaw=="]
)
def test_bedrock_api_keys_are_sent_as_bearer_tokens_unsigned(key: str) -> None:
    target = Target(base_url="http://127.0.0.1:9/bedrock", api_key=key, model="m")
    payload = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    headers = adapter.chat_request(target, payload, stream=False).headers
    assert headers["authorization"] == f"Bearer {key}"
    assert "x-amz-date" not in headers


def test_temporary_credentials_send_their_session_token() -> None:
    target = Target(
        base_url="https://bedrock-runtime.us-east-1.amazonaws.com",
        api_key="ASIAEXAMPLE:secret:FwoGZXIvYXdzEXAMPLETOKEN==",
        model="m",
    )
    payload = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}
    headers = adapter.chat_request(target, payload, stream=False).headers
    assert headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN=="
    assert "x-amz-security-token" in headers["authorization"].split("SignedHeaders=")[1]


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2",
        "odd id/with%signs?and#more é",
    ],
)
def test_the_url_is_sent_exactly_as_signed(model: str) -> None:
    # The signature covers the path as written; the client must not re-encode it.
    target = Target(
        base_url="https://bedrock-runtime.us-east-1.amazonaws.com", api_key="A:B", model=model
    )
    url = adapter.chat_request(
        target, {"messages": [{"role": "user", "content": "x"}]}, stream=False
    ).url
    sent = upstream.endpoint(url).target
    assert sent == urlsplit(url).path
    assert unquote(sent.split("/")[2]) == model


def test_an_embeddings_request_is_a_titan_v2_invoke_model_request() -> None:
    target = Target(
        base_url="https://bedrock-runtime.us-east-1.amazonaws.com",
        api_key="AKID:SECRET",
        model="amazon.titan-embed-text-v2:0",
    )
    request = adapter.embeddings_request(
        target, {"model": "embed", "input": ["a text"], "dimensions": 256}
    )
    assert request.url == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2:0/invoke"
    )
    assert orjson.loads(request.body or b"") == {
        "inputText": "a text",
        "normalize": True,
        "dimensions": 256,
    }
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


@pytest.mark.parametrize("value", [["a", "b"], [[1, 2, 3]], [1, 2]])
def test_embeddings_titan_cannot_take_in_one_call_are_refused(value: Any) -> None:
    target = Target(
        base_url="https://bedrock-runtime.us-east-1.amazonaws.com", api_key="A:B", model="t"
    )
    with pytest.raises(GatewayError) as caught:
        adapter.embeddings_request(target, {"model": "embed", "input": value})
    assert (caught.value.status, caught.value.param) == (400, "input")


def test_a_titan_embedding_becomes_an_openai_embeddings_list() -> None:
    answer = {"embedding": [0.5, -0.25], "inputTextTokenCount": 3, "embeddingsByType": {}}
    assert adapter.embeddings_response(answer, model="embed") == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "embed",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    with pytest.raises(GatewayError):
        adapter.embeddings_response({"embedding": "nope"}, model="embed")
