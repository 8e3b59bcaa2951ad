"""The guarded stream relay on its own: however the bytes are cut, the client
gets valid events with the same checked text."""

from __future__ import annotations

import orjson
import pytest

from governance.guardrails import DETECTORS, CustomPattern, Rule, Scanner
from proxy.errors import GatewayError
from proxy.guarding import ANTHROPIC, OPENAI_CHAT, Recorder, ResponseGuard
from proxy.sse import SSEParser
from proxy.usage import AnthropicStreamScanner, OpenAIStreamScanner

SCANNER = Scanner(detectors={d.name: Rule("redact") for d in DETECTORS})
PIECES = ["Reach me at ja", "ne@exam", "ple.com or use AKIAIOSFOD", "NN7EXAMPLE", " today."]
REDACTED = "Reach me at [EMAIL] or use [SECRET:aws_access_key] today."


def openai_events(pieces: list[str]) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def anthropic_events(pieces: list[str]) -> bytes:
    def event(name: str, data: dict) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    out = [event("message_start", {"type": "message_start", "message": {"usage": {}}})]
    out.append(event("content_block_start", {"type": "content_block_start", "index": 0}))
    for index, piece in enumerate(pieces):
        delta = {"type": "text_delta", "text": piece}
        out.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
        if index == 1:
            out.append(event("ping", {"type": "ping"}))  # a keep-alive inside a match
    out.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    out.append(event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def relay(shape, inner, raw: bytes, cuts: list[int], scanner: Scanner = SCANNER) -> bytes:
    stream = ResponseGuard(scanner, shape, Recorder({})).stream(inner)
    out = []
    previous = 0
    for cut in [*cuts, len(raw)]:
        out.append(stream.feed(raw[previous:cut]))
        previous = cut
    out.append(stream.flush())
    return b"".join(out)


def texts(raw: bytes, anthropic: bool) -> list[str]:
    found = []
    for event in SSEParser().feed(raw):
        if event.data == b"[DONE]":
            continue
        data = orjson.loads(event.data)  # every event is valid JSON
        if anthropic:
            if data.get("type") == "content_block_delta":
                found.append(data["delta"]["text"])
        elif data["choices"] and data["choices"][0]["delta"].get("content"):
            found.append(data["choices"][0]["delta"]["content"])
    return found


def test_an_openai_stream_cut_at_every_byte_is_redacted_the_same():
    raw = openai_events(PIECES)
    for cut in range(1, len(raw)):
        out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [cut])
        assert "".join(texts(out, anthropic=False)) == REDACTED, cut
        assert out.endswith(b"data: [DONE]\n\n")


def test_an_anthropic_stream_cut_at_every_byte_is_redacted_the_same():
    raw = anthropic_events(PIECES)
    for cut in range(1, len(raw)):
        out = relay(ANTHROPIC, AnthropicStreamScanner(), raw, [cut])
        assert "".join(texts(out, anthropic=True)) == REDACTED, cut
        # The keep-alive inside the match passed; the events keep their order otherwise.
        names = [event.event for event in SSEParser().feed(out)]
        assert names[-2:] == ["content_block_stop", "message_stop"]
        assert names.count("ping") == 1


def test_a_stream_without_findings_leaves_byte_for_byte():
    raw = openai_events(["Nothing ", "to see ", "here, just ", "words."] * 20)
    assert relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [7, 300]) == raw


def test_a_private_key_arriving_in_many_deltas_is_held_until_it_ends():
    body = ["-----BEGIN PRIVATE KEY-----\n", *["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"] * 20]
    pieces = ["Here: ", *body, "-----END PRIVATE KEY-----", " done."]
    out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), openai_events(pieces), [])
    assert "".join(texts(out, anthropic=False)) == "Here: [SECRET:private_key] done."


def test_a_blocking_rule_stops_the_stream_before_the_match_leaves():
    scanner = Scanner(detectors={"aws_access_key": Rule("block")})
    sent = []
    stream = ResponseGuard(scanner, OPENAI_CHAT, Recorder({})).stream(
        OpenAIStreamScanner(drop_usage_event=False)
    )
    with pytest.raises(GatewayError) as caught:
        for event in openai_events(PIECES).split(b"\n\n"):
            sent.append(stream.feed(event + b"\n\n"))
        stream.flush()
    assert caught.value.code == "guardrail_violation"
    assert b"AKIA" not in b"".join(sent)


# The arguments' JSON text: findings cut across fragments, one right after an
# escaped newline, one escape sequence itself cut in two.
ARGUMENT_PIECES = [
    '{"to": "ja',
    "ne@exam",
    'ple.com", "note": "line\\',
    "nAKIAIOSFOD",
    'NN7EXAMPLE\\u00e9", "n": 1}',
]
ARGUMENTS_REDACTED = {"to": "[EMAIL]", "note": "line\n[SECRET:aws_access_key]é", "n": 1}


def openai_call_events(pieces: list[str]) -> bytes:
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [first]}}]}]
    chunks += [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}}
            ]
        }
        for p in pieces
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def anthropic_call_events(pieces: list[str]) -> bytes:
    def event(name: str, data: dict) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    out = [event("message_start", {"type": "message_start", "message": {"usage": {}}})]
    out.append(
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
    )
    for piece in pieces:
        delta = {"type": "input_json_delta", "partial_json": piece}
        out.append(
            event(
                "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
            )
        )
    out.append(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    out.append(event("message_stop", {"type": "message_stop"}))
    return b"".join(out)


def arguments(raw: bytes, anthropic: bool) -> list[str]:
    found = []
    for event in SSEParser().feed(raw):
        if event.data == b"[DONE]":
            continue
        data = orjson.loads(event.data)
        if anthropic:
            if data.get("type") == "content_block_delta":
                found.append(data["delta"]["partial_json"])
        elif data["choices"]:
            for call in data["choices"][0]["delta"].get("tool_calls") or ():
                found.append(call["function"].get("arguments") or "")
    return found


def test_openai_tool_call_arguments_cut_at_every_byte_stay_valid_json_and_redacted():
    raw = openai_call_events(ARGUMENT_PIECES)
    for cut in range(1, len(raw)):
        out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [cut])
        fragments = arguments(out, anthropic=False)
        assert orjson.loads("".join(fragments)) == ARGUMENTS_REDACTED, cut
        assert not any("AKIA" in fragment or "ja" == fragment for fragment in fragments)


def test_anthropic_input_json_deltas_cut_at_every_byte_stay_valid_json_and_redacted():
    raw = anthropic_call_events(ARGUMENT_PIECES)
    for cut in range(1, len(raw)):
        out = relay(ANTHROPIC, AnthropicStreamScanner(), raw, [cut])
        assert orjson.loads("".join(arguments(out, anthropic=True))) == ARGUMENTS_REDACTED, cut


def test_tool_call_arguments_without_findings_leave_byte_for_byte():
    raw = openai_call_events(['{"city": "Par', 'is", "days": 3, "note": "a\\"b\\\\c"}'])
    assert relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [40]) == raw


def test_two_tool_calls_are_checked_apart():
    # A key whose halves sit in two different calls is no key.
    chunks = [
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": a}}]}}
            ]
        }
        for i, a in ((0, '{"a": "AKIAIOSFOD'), (1, 'NN7EXAMPLE"}'), (0, '"}'))
    ]
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [])
    # Each call's fragments leave untouched, in their order (calls may interleave).
    assert sorted(out.split(b"\n\n")) == sorted(raw.split(b"\n\n"))
    assert b"SECRET" not in out


def test_a_number_in_streamed_arguments_is_redacted_as_a_quoted_placeholder():
    raw = openai_call_events(['{"card": 41111111', '11111111, "n": 2}'])
    out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [50])
    assert orjson.loads("".join(arguments(out, anthropic=False))) == {
        "card": "[CARD_NUMBER]",
        "n": 2,
    }


def test_a_redaction_reaching_across_the_arguments_structure_blocks():
    scanner = Scanner(detectors={}, custom=((CustomPattern("pair", r"1, ", "redact"), ()),))
    raw = openai_call_events(['{"a": 1, "b": 2}'])
    with pytest.raises(GatewayError) as caught:
        relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [], scanner)
    assert caught.value.code == "guardrail_violation"


def test_legacy_function_call_arguments_are_checked_whole_and_streamed():
    pieces = ['{"to": "ja', 'ne@example.com"}']
    chunks = [
        {"choices": [{"index": 0, "delta": {"function_call": {"arguments": p}}}]} for p in pieces
    ]
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [30])
    streamed = [
        orjson.loads(event.data)["choices"][0]["delta"]["function_call"]["arguments"]
        for event in SSEParser().feed(out)
        if event.data != b"[DONE]"
    ]
    assert orjson.loads("".join(streamed)) == {"to": "[EMAIL]"}
    message = {"role": "assistant", "function_call": {"name": "f", "arguments": "".join(pieces)}}
    body = orjson.dumps({"choices": [{"index": 0, "message": message}]})
    checked = orjson.loads(ResponseGuard(SCANNER, OPENAI_CHAT, Recorder({})).complete(body))
    arguments = checked["choices"][0]["message"]["function_call"]["arguments"]
    assert orjson.loads(arguments) == {"to": "[EMAIL]"}


def test_an_event_carrying_two_tool_calls_has_both_checked():
    calls = [
        {"index": i, "function": {"arguments": f'{{"to": "user{i}@example.com"}}'}} for i in (0, 1)
    ]
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": calls}}]}
    raw = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
    out = relay(OPENAI_CHAT, OpenAIStreamScanner(drop_usage_event=False), raw, [])
    sent = orjson.loads(next(iter(SSEParser().feed(out))).data)
    assert [c["function"]["arguments"] for c in sent["choices"][0]["delta"]["tool_calls"]] == [
        '{"to": "[EMAIL]"}',
        '{"to": "[EMAIL]"}',
    ]
