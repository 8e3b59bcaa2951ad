"""Golden tests: the Anthropic translations, both directions, streams included."""

from __future__ import annotations

import orjson
import pytest

from proxy.anthropic_api import AnthropicEventEncoder, encode_message, to_canonical
from proxy.errors import GatewayError
from proxy.providers.anthropic import AnthropicAdapter, messages_request
from proxy.providers.base import Target
from proxy.sse import SSEParser
from tests.adapter_helpers import decode_in_cuts

ADAPTER = AnthropicAdapter()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

CANONICAL_REQUEST = {
    "model": "claude",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/sky.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "Rain"}]},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": SCHEMA},
        }
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "max_completion_tokens": 100,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": "END",
    "user": "user-7",
    "stream": True,
}

ANTHROPIC_REQUEST = {
    "model": "claude-3",
    "max_tokens": 100,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_weather",
                    "input": {"city": "Lyon"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "Rain"},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ],
    "system": "Be brief.\n\nUse metric units.",
    "temperature": 0.2,
    "top_p": 0.9,
    "stop_sequences": ["END"],
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "metadata": {"user_id": "user-7"},
    "stream": True,
}


def test_a_canonical_request_becomes_a_messages_request():
    assert messages_request(CANONICAL_REQUEST, "claude-3") == ANTHROPIC_REQUEST


def test_the_adapter_sends_it_with_anthropics_headers():
    request = ADAPTER.chat_request(
        Target("https://api.anthropic.com/v1", "sk-ant-1", "claude-3", {"version": "2024-01-01"}),
        CANONICAL_REQUEST,
        stream=True,
    )
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert request.headers == {
        "x-api-key": "sk-ant-1",
        "anthropic-version": "2024-01-01",
        "content-type": "application/json",
    }
    assert orjson.loads(request.body) == ANTHROPIC_REQUEST


def test_a_messages_request_becomes_canonical_and_back():
    canonical = to_canonical(ANTHROPIC_REQUEST, stream=True)
    assert canonical["messages"][:2] == [
        {"role": "system", "content": "Be brief.\n\nUse metric units."},
        {"role": "user", "content": CANONICAL_REQUEST["messages"][2]["content"]},
    ]
    assert canonical["messages"][3:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "Rain"},
        {"role": "user", "content": "Thanks"},
    ]
    assert canonical["tool_choice"] == "required"
    assert canonical["parallel_tool_calls"] is False
    assert canonical["stream_options"] == {"include_usage": True}
    assert messages_request(canonical, "claude-3") == ANTHROPIC_REQUEST


def test_what_anthropic_cannot_do_is_refused_before_sending():
    for extra, param in (({"n": 3}, "n"), ({"response_format": {"type": "json_object"}}, None)):
        with pytest.raises(GatewayError) as caught:
            messages_request({**CANONICAL_REQUEST, **extra}, "claude-3")
        assert caught.value.status == 400
        assert caught.value.code == "unsupported_parameter"
        if param:
            assert caught.value.param == param


ANTHROPIC_ANSWER = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-3",
    "content": [
        {"type": "thinking", "thinking": "...", "signature": "x"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 10,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 2,
        "output_tokens": 7,
    },
}


def test_an_anthropic_answer_becomes_a_canonical_completion():
    completion = ADAPTER.chat_response(ANTHROPIC_ANSWER, model="claude-3")
    completion.pop("created")
    assert completion == {
        "id": "msg_01",
        "object": "chat.completion",
        "model": "claude-3",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "toolu_9",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 16,
            "completion_tokens": 7,
            "total_tokens": 23,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }


def test_a_canonical_completion_becomes_an_anthropic_message():
    completion = ADAPTER.chat_response(ANTHROPIC_ANSWER, model="claude-3")
    message = orjson.loads(encode_message(completion, "my-model"))
    assert message.pop("id").startswith("msg_")
    assert message == {
        "type": "message",
        "role": "assistant",
        "model": "my-model",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_9",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 4,
            "output_tokens": 7,
        },
    }


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


ANTHROPIC_STREAM = b"".join(
    [
        _event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_02",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-3",
                    "content": [],
                    "stop_reason": None,
                    "usage": {"input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 1},
                },
            },
        ),
        _event("ping", {"type": "ping"}),
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hé"},
            },
        ),
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
            },
        ),
        _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
            },
        ),
        _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            },
        ),
        _event("content_block_stop", {"type": "content_block_stop", "index": 1}),
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 9},
            },
        ),
        _event("message_stop", {"type": "message_stop"}),
    ]
)

CANONICAL_CHUNKS = [
    {"delta": {"role": "assistant", "content": ""}},
    {"delta": {"content": "Hé"}},
    {
        "delta": {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": ""},
                }
            ]
        }
    },
    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}},
    {"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}},
    {"delta": {}, "finish_reason": "tool_calls"},
]


def _decode(stream: bytes, cut: int) -> list[dict]:
    return decode_in_cuts(ADAPTER.stream_decoder(model="claude-3"), stream, cut)


@pytest.mark.parametrize("cut", [1, 7, 10_000])
def test_an_anthropic_stream_becomes_canonical_chunks(cut):
    chunks = _decode(ANTHROPIC_STREAM, cut)
    for chunk in chunks:
        assert chunk.pop("created")
        assert chunk.pop("id") == "msg_02"
        assert chunk.pop("model") == "claude-3"
        assert chunk.pop("object") == "chat.completion.chunk"
    usage = chunks.pop()
    assert usage == {
        "choices": [],
        "usage": {
            "prompt_tokens": 15,
            "completion_tokens": 9,
            "total_tokens": 24,
            "prompt_tokens_details": {"cached_tokens": 3},
        },
    }
    assert [
        {
            "delta": c["choices"][0]["delta"],
            **({"finish_reason": r} if (r := c["choices"][0]["finish_reason"]) else {}),
        }
        for c in chunks
    ] == CANONICAL_CHUNKS


def test_a_stream_cut_before_message_stop_is_an_error():
    decoder = ADAPTER.stream_decoder(model="claude-3")
    decoder.feed(ANTHROPIC_STREAM[: ANTHROPIC_STREAM.index(b"event: message_delta")])
    with pytest.raises(GatewayError) as caught:
        decoder.finish()
    assert caught.value.code == "upstream_invalid_response"


def test_canonical_chunks_become_anthropics_event_sequence():
    chunks = _decode(ANTHROPIC_STREAM, 10_000)
    encoder = AnthropicEventEncoder("my-model")
    wire = encoder.encode(chunks) + encoder.finish()
    events = SSEParser().feed(wire)
    names = [event.event for event in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    data = [orjson.loads(event.data) for event in events]
    assert data[0]["message"]["model"] == "my-model"
    assert data[2]["content_block"] == {"type": "text", "text": ""}
    assert data[3]["delta"] == {"type": "text_delta", "text": "Hé"}
    assert data[5] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    }
    assert [d["delta"]["partial_json"] for d in data[6:8]] == ['{"a":', "1}"]
    assert data[9] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 3,
            "output_tokens": 9,
        },
    }
    assert encoder.delta_events == 3


def test_a_stream_with_no_content_still_ends_with_message_stop():
    encoder = AnthropicEventEncoder("m")
    names = [event.event for event in SSEParser().feed(encoder.encode([]) + encoder.finish())]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]
