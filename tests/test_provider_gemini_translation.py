"""The Gemini adapter translates canonical requests, answers and streams exactly
as pinned in tests/golden/gemini/, and refuses what Gemini cannot do."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from proxy.errors import GatewayError
from proxy.providers import REGISTRY
from proxy.providers.base import Target
from proxy.providers.gemini import GeminiAdapter, gemini_schema
from tests import adapter_helpers
from tests.adapter_helpers import decode_in_cuts

ADAPTER = GeminiAdapter()
TARGET = Target(
    base_url="https://generativelanguage.googleapis.com/v1beta",
    api_key="secret-key",
    model="gemini-2.5-flash",
)


def golden(name: str) -> list[dict[str, Any]]:
    return adapter_helpers.golden("gemini", name)


def cases(name: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in golden(name)]


def normalised(result: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The result with its creation time and (when random) id as the golden writes them."""
    assert isinstance(result["created"], int) and result["created"] > 0
    result = {**result, "created": 0}
    if expected["id"] == "ID":
        assert result["id"].startswith("chatcmpl-")
        result["id"] = "ID"
    return result


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], **extra}


def body_of(payload: dict[str, Any], target: Target = TARGET) -> dict[str, Any]:
    return orjson.loads(ADAPTER.chat_request(target, payload, stream=False).body)


def refusal(payload: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        ADAPTER.chat_request(TARGET, payload, stream=False)
    return caught.value


# --- requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("requests"))
def test_it_translates_a_canonical_request_exactly(case):
    target = Target(
        base_url=case["target"]["base_url"],
        api_key="secret-key",
        model=case["target"]["model"],
        options=case["target"]["options"],
    )
    request = ADAPTER.chat_request(target, case["request"], stream=case["stream"])
    assert {
        "method": request.method,
        "url": request.url,
        "headers": request.headers,
        "body": orjson.loads(request.body),
    } == case["expected"]


def test_the_adapter_is_registered_for_the_gemini_kind():
    assert isinstance(REGISTRY["gemini"], GeminiAdapter)
    assert REGISTRY["gemini"].wire == "gemini"


def test_a_native_request_keeps_its_body_but_not_a_model_field():
    native = {"model": "ignored", "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    request = ADAPTER.native_request(TARGET, native, stream=True)
    assert request.url.endswith("/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert orjson.loads(request.body) == {"contents": native["contents"]}


def test_a_model_already_named_as_a_resource_is_not_prefixed_twice():
    target = Target(base_url=TARGET.base_url + "/", api_key="k", model="models/gemini-2.0-flash")
    request = ADAPTER.chat_request(target, chat(), stream=False)
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )


def test_a_tool_result_for_an_unknown_call_is_refused():
    error = refusal(
        chat(messages=[{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "x"}])
    )
    assert error.status == 400 and "tool_call_id" in error.message


def test_tool_call_arguments_that_are_not_a_json_object_are_refused():
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    error = refusal(
        chat(
            messages=[
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [call]},
            ]
        )
    )
    assert error.status == 400 and "JSON object" in error.message


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logit_bias": {"42": 1}}, "logit_bias"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"response_format": {"type": "grammar"}}, "response_format"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
    ],
)
def test_features_gemini_lacks_are_refused_with_a_clear_400(extra, param):
    error = refusal(chat(**extra))
    assert error.status == 400
    assert error.code == "unsupported_parameter" and error.param == param
    assert "gemini" in error.message


def test_an_image_url_gemini_cannot_fetch_is_refused():
    part = {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.png"}}
    error = refusal(chat(messages=[{"role": "user", "content": [part]}]))
    assert error.status == 400 and "ftp" in error.message


def test_files_by_openai_file_id_are_refused():
    part = {"type": "file", "file": {"file_id": "file-123"}}
    assert refusal(chat(messages=[{"role": "user", "content": [part]}])).status == 400


def test_a_conversation_of_only_system_messages_is_refused():
    error = refusal(chat(messages=[{"role": "system", "content": "Be brief."}]))
    assert error.status == 400


def test_every_model_turn_with_calls_carries_a_thought_signature_on_its_first_call():
    def turn(name: str) -> list[dict[str, Any]]:
        call = {"id": f"id-{name}", "type": "function", "function": {"name": name}}
        return [
            {"role": "assistant", "content": None, "tool_calls": [call, {**call, "id": "2"}]},
            {"role": "tool", "tool_call_id": f"id-{name}", "content": "ok"},
            {"role": "tool", "tool_call_id": "2", "content": "ok"},
        ]

    body = body_of(chat(messages=[{"role": "user", "content": "Go"}, *turn("a"), *turn("b")]))
    model_turns = [c for c in body["contents"] if c["role"] == "model"]
    assert len(model_turns) == 2
    for content in model_turns:
        signed = [p for p in content["parts"] if "thoughtSignature" in p]
        assert signed == [content["parts"][0]]
        assert signed[0]["thoughtSignature"] == "skip_thought_signature_validator"


def test_a_recursive_schema_is_refused_rather_than_inlined_forever():
    schema = {
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(GatewayError) as caught:
        gemini_schema(schema)
    assert caught.value.status == 400 and "recursive" in caught.value.message


def test_schema_keywords_gemini_refuses_are_dropped_at_every_depth():
    schema = {
        "type": "object",
        "$schema": "x",
        "additionalProperties": False,
        "properties": {
            "a": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": True, "properties": {}},
                "uniqueItems": True,
            },
            "b": {"type": "string", "format": "uri", "exclusiveMinimum": 1},
        },
    }
    assert gemini_schema(schema) == {
        "type": "OBJECT",
        "properties": {
            "a": {"type": "ARRAY", "items": {"type": "OBJECT"}},
            "b": {"type": "STRING"},
        },
    }


def test_an_unknown_reasoning_effort_is_refused():
    assert refusal(chat(reasoning_effort="extreme")).param == "reasoning_effort"


# --- answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("answers"))
def test_it_translates_an_answer_exactly(case):
    result = ADAPTER.chat_response(case["answer"], model="route-model")
    assert normalised(result, case["expected"]) == case["expected"]


def test_generated_call_ids_are_the_same_streamed_or_not():
    [answer] = [c["answer"] for c in golden("answers") if c["name"] == "parallel_function_calls"]
    whole = ADAPTER.chat_response(answer, model="m")["choices"][0]["message"]["tool_calls"]
    decoder = ADAPTER.stream_decoder(model="m")
    event = {**answer, "candidates": [{**answer["candidates"][0]}]}
    chunks = decoder.feed(b"data: " + orjson.dumps(event) + b"\r\n\r\n") + decoder.finish()
    streamed = [
        call["id"]
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", [])
        if "id" in call
    ]
    assert streamed == [call["id"] for call in whole]
    assert len(set(streamed)) == 3


@pytest.mark.parametrize(
    "answer",
    [[], {"candidates": []}, {"usageMetadata": {}}, {"candidates": ["x"]}],
    ids=["not-an-object", "no-candidates", "nothing", "bad-candidate"],
)
def test_an_unreadable_answer_is_a_502(answer):
    with pytest.raises(GatewayError) as caught:
        ADAPTER.chat_response(answer, model="m")
    assert caught.value.status == 502 and caught.value.code == "upstream_invalid_response"


# --- streams ----------------------------------------------------------------------------


def decode(stream: bytes, cut: int) -> tuple[list[dict[str, Any]], Any]:
    decoder = ADAPTER.stream_decoder(model="route-model")
    return decode_in_cuts(decoder, stream, cut), decoder.usage


@pytest.mark.parametrize("cut", [1, 2, 7, 64, 1 << 20])
@pytest.mark.parametrize("case", cases("streams"))
def test_it_decodes_a_stream_exactly_whatever_the_cuts(case, cut):
    chunks, usage = decode(case["stream"].encode(), cut)
    assert [normalised(c, e) for c, e in zip(chunks, case["expected"], strict=False)] == case[
        "expected"
    ]
    assert len(chunks) == len(case["expected"])
    assert len({chunk["id"] for chunk in chunks}) == 1
    last = case["expected"][-1]["usage"]
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (
        last["prompt_tokens"],
        last["completion_tokens"],
        last["prompt_tokens_details"]["cached_tokens"],
    )


def test_a_stream_also_decodes_with_lf_framing():
    [case] = [c for c in golden("streams") if c["name"] == "text"]
    crlf, _ = decode(case["stream"].encode(), 3)
    lf, _ = decode(case["stream"].replace("\r\n", "\n").encode(), 3)
    assert [c["choices"] for c in lf] == [c["choices"] for c in crlf]


@pytest.mark.parametrize(
    ("code", "status"),
    [(429, 429), (500, 502), (503, 502), (504, 504), (400, 502)],
)
def test_an_error_event_in_a_stream_raises_with_its_meaning(code, status):
    decoder = ADAPTER.stream_decoder(model="m")
    decoder.feed(b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"index":0}]}\r\n\r\n')
    event = {"error": {"code": code, "message": "went wrong", "status": "X"}}
    with pytest.raises(GatewayError) as caught:
        decoder.feed(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
    assert caught.value.status == status and "went wrong" in caught.value.message


def test_a_non_json_event_is_a_502():
    decoder = ADAPTER.stream_decoder(model="m")
    with pytest.raises(GatewayError) as caught:
        decoder.feed(b'data: {"candidates": nope\r\n\r\n')
    assert caught.value.status == 502


def test_a_stream_cut_before_its_finish_reason_is_a_502():
    decoder = ADAPTER.stream_decoder(model="m")
    chunks = decoder.feed(b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]}}]}\r\n\r\n')
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "a"},
    ]
    with pytest.raises(GatewayError) as caught:
        decoder.finish()
    assert caught.value.status == 502


# --- embeddings -------------------------------------------------------------------------


def test_an_embeddings_request_becomes_a_batch_of_embed_content_requests():
    request = ADAPTER.embeddings_request(
        TARGET, {"model": "e", "input": ["a b", "c"], "dimensions": 4}
    )
    assert request.url.endswith("/models/gemini-2.5-flash:batchEmbedContents")
    assert request.headers["x-goog-api-key"] == "secret-key"
    assert orjson.loads(request.body) == {
        "requests": [
            {
                "model": "models/gemini-2.5-flash",
                "content": {"parts": [{"text": "a b"}]},
                "outputDimensionality": 4,
            },
            {
                "model": "models/gemini-2.5-flash",
                "content": {"parts": [{"text": "c"}]},
                "outputDimensionality": 4,
            },
        ]
    }


def test_token_array_embedding_input_is_refused():
    with pytest.raises(GatewayError) as caught:
        ADAPTER.embeddings_request(TARGET, {"model": "e", "input": [[1, 2, 3]]})
    assert caught.value.status == 400


def test_an_embeddings_answer_becomes_openais_list():
    answer = {"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 0.0]}]}
    assert ADAPTER.embeddings_response(answer, model="e") == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "model": "e",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def test_an_embeddings_answer_can_be_given_in_openais_base64_form():
    answer = {"embeddings": [{"values": [0.5, -0.25]}]}
    result = ADAPTER.embeddings_response(answer, model="e", encoding_format="base64")
    packed = base64.b64decode(result["data"][0]["embedding"])
    assert struct.unpack("<2f", packed) == (0.5, -0.25)
