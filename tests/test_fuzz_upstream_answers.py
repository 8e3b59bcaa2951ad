"""Fuzzing what providers answer (hypothesis): a provider of the test's own,
on a real socket, first relays the mock provider's real answers for each wire
format (OpenAI, Anthropic, Gemini, Bedrock, Cohere; JSON bodies, SSE streams,
Bedrock's binary event stream) and then serves them broken: truncated, a
field of the wrong type, a key missing, invalid UTF-8, malformed SSE lines,
event-stream frames with a bad length or checksum, huge fields, answers that
are not HTTP at all.

Every answer the client gets through the gateway is well formed (a complete
answer, or a stream that ends with its end event or an error event) or an
error in its own envelope (502 with the gateway's ``upstream_*`` code is
right), in bounded time; the gateway's log shows no unhandled exception, and
every request has its usage record.

Malformed answers written by hand (a non-JSON SSE event, a stalled stream,
an oversized body, upstream error statuses) are in
``tests/test_upstream_stream_faults.py`` and ``tests/test_upstream_errors.py``;
this file generates them.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys import selectors, services
from proxy.mock_provider import bedrock as mock_bedrock
from tests.conftest import gateway_env
from tests.fuzz_helpers import CATCH_ALL, EXAMPLES, FUZZ, UPSTREAM_STATUSES
from tests.ledger_helpers import new_tag
from tests.processes import GatewayProcess
from tests.reliability_report import add_row, statuses_text

# How long a request may take at most: the providers' read timeout is 1 s,
# and a truncated answer declaring more bytes than it sends waits that long.
SLOWEST = 10.0

# kind: (the mock's base URL path, options, provider model, key).
PROVIDERS: dict[str, tuple[str, dict[str, str], str, str]] = {
    "openai": ("/v1", {}, "mock-gpt", "sk-mock-fuzz-0001"),
    "anthropic": ("/anthropic/v1", {}, "mock-claude", "sk-ant-mock-fuzz-0001"),
    "gemini": ("/v1beta", {}, "gemini-2.5-flash", "AIza-mock-fuzz-0001"),
    "bedrock": (
        "/bedrock",
        {"region": "us-east-1"},
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        f"{mock_bedrock.ACCESS_KEY_ID}:{mock_bedrock.SECRET_ACCESS_KEY}",
    ),
    "cohere": ("", {}, "command-a-03-2025", "cohere-key-0001"),
}
NAMES = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "gemini": "Gemini",
    "bedrock": "Bedrock",
    "cohere": "Cohere",
}
DOORS = {
    "openai": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Say hi"}]}),
    "anthropic": (
        "/anthropic/v1/messages",
        {"messages": [{"role": "user", "content": "Say hi"}]},
    ),
}


# --- the provider of the test's own ---------------------------------------------------


@dataclass
class Answer:
    """What the fuzzing provider sends back: a status, headers and a body,
    or raw bytes that need not be HTTP at all."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # The length declared; more than the body is a truncated answer.
    declared: int | None = None
    raw: bytes | None = None


class FuzzingProvider:
    """An HTTP server on a real socket, in a thread of its own. With no
    answer set it relays each request to the mock provider and keeps the
    mock's answer (:attr:`recorded`); with one set, it sends that."""

    def __init__(self, mock_url: str) -> None:
        self.mock_url = mock_url
        self.answer: Answer | None = None
        self.recorded: Answer | None = None
        self.served = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self.relay = httpx.AsyncClient(timeout=10)
        started.set()
        self.loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.relay.aclose()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            answer = self.answer
            if answer is None:
                answer = await self._relayed(method, target, headers, body)
            self.served += 1
            writer.write(self._encoded(answer))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _relayed(self, method: str, target: str, headers: dict, body: bytes) -> Answer:
        # The Host header is kept: Bedrock's signature covers it.
        sent = {k: v for k, v in headers.items() if k not in ("content-length", "connection")}
        response = await self.relay.request(
            method, self.mock_url + target, headers=sent, content=body
        )
        kept = {"content-type": response.headers.get("content-type", "application/json")}
        self.recorded = Answer(response.status_code, kept, response.content)
        return self.recorded

    @staticmethod
    def _encoded(answer: Answer) -> bytes:
        if answer.raw is not None:
            return answer.raw
        declared = len(answer.body) if answer.declared is None else answer.declared
        head = [f"HTTP/1.1 {answer.status} Fuzzed", f"content-length: {declared}"]
        head += [f"{name}: {value}" for name, value in answer.headers.items()]
        head.append("connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer.body


# --- breaking answers -------------------------------------------------------------------

ODD_VALUES = [None, True, -1, 0, 2**40, 2**70, 1.5, 1e300, "", "x", [], [None], {}, {"a": 1}]
INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80"]


def paths_of(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place inside a JSON value: the paths of its members, nested."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, member in value.items():
            found += paths_of(member, (*prefix, key))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            found += paths_of(member, (*prefix, index))
    return found


def replaced(value: Any, path: tuple, new: Any, *, drop: bool = False) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if drop and not rest:
            copy.pop(head, None)
        else:
            copy[head] = replaced(value[head], rest, new, drop=drop)
        return copy
    copy = list(value)
    if drop and not rest:
        del copy[head]
    else:
        copy[head] = replaced(value[head], rest, new, drop=drop)
    return copy


@st.composite
def broken_json(draw, data: bytes) -> bytes:
    """``data`` (a JSON document) broken one way."""
    how = draw(st.sampled_from(["type", "drop", "huge", "truncate", "utf8", "bytes"]))
    if how in ("type", "drop", "huge"):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = None
        places = paths_of(value)
        if places:
            place = draw(st.sampled_from(places))
            # The standard library's encoder: integers past 64 bits are JSON too.
            if how == "type":
                odd = draw(st.sampled_from(ODD_VALUES))
                return json.dumps(replaced(value, place, odd)).encode()
            if how == "drop":
                return json.dumps(replaced(value, place, None, drop=True)).encode()
            huge = draw(st.sampled_from(["x" * 1_000_000, [0] * 100_000, 10**300]))
            return json.dumps(replaced(value, place, huge)).encode()
        how = "truncate"
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "utf8" and data:
        spot = draw(st.integers(0, len(data)))
        return data[:spot] + draw(st.sampled_from(INVALID_UTF8)) + data[spot:]
    return draw(st.binary(max_size=200))


SSE_GARBAGE = [
    b"data: {",
    b"data: [1, 2",
    b"data: null",
    b'data: "text"',
    b"data:",
    b"event: \xff\xfe",
    b"data: \xff\xfe",
    b": a comment",
    b"retry: x",
    b"id: 1",
    b"not a field at all",
    b"data: " + b"x" * 1_000_000,
    b"\r\r\r",
    b"data: [DONE]",
]


@st.composite
def broken_sse(draw, data: bytes) -> bytes:
    """An SSE stream broken one way: one event's JSON broken, an event
    dropped or repeated or replaced by garbage, the stream truncated, its
    line endings changed."""
    events = [block for block in data.split(b"\n\n") if block.strip()]
    how = draw(st.sampled_from(["event", "drop", "repeat", "garbage", "truncate", "crlf"]))
    if not events:
        how = "truncate"
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "crlf":
        return data.replace(b"\n", draw(st.sampled_from([b"\r\n", b"\r"])))
    index = draw(st.integers(0, len(events) - 1))
    if how == "drop":
        del events[index]
    elif how == "repeat":
        events.insert(index, events[index])
    elif how == "garbage":
        events.insert(index, draw(st.sampled_from(SSE_GARBAGE)))
    else:
        lines = events[index].split(b"\n")
        spots = [n for n, line in enumerate(lines) if line.startswith(b"data:")]
        if not spots:
            events[index] = draw(st.sampled_from(SSE_GARBAGE))
        else:
            spot = draw(st.sampled_from(spots))
            payload = lines[spot].removeprefix(b"data:").strip()
            lines[spot] = b"data: " + draw(broken_json(payload)).replace(b"\n", b" ")
            events[index] = b"\n".join(lines)
    return b"\n\n".join(events) + b"\n\n"


def frames_of(data: bytes) -> list[bytes]:
    """An event stream's messages, each as its bytes (by their length prefixes)."""
    frames, at = [], 0
    while at + 4 <= len(data):
        (total,) = struct.unpack(">I", data[at : at + 4])
        if total < 16:
            break
        frames.append(data[at : at + total])
        at += total
    return frames


def reframed(message: bytes, payload: bytes) -> bytes:
    """``message`` with another payload, its lengths and checksums correct."""
    _, headers_length = struct.unpack(">II", message[:8])
    headers = message[12 : 12 + headers_length]
    total = 12 + headers_length + len(payload) + 4
    prelude = struct.pack(">II", total, headers_length)
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


@st.composite
def broken_event_stream(draw, data: bytes) -> bytes:
    """Bedrock's binary event stream broken one way: one message's JSON
    broken (checksums still right), a byte flipped (checksums wrong), a
    length prefix too large or too small, a message dropped, truncated."""
    frames = frames_of(data)
    how = draw(st.sampled_from(["payload", "flip", "length", "drop", "truncate", "headers"]))
    if not frames:
        how = "truncate"
    if how == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    index = draw(st.integers(0, len(frames) - 1))
    message = frames[index]
    if how == "payload":
        _, headers_length = struct.unpack(">II", message[:8])
        payload = message[12 + headers_length : -4]
        frames[index] = reframed(message, draw(broken_json(payload)))
    elif how == "flip":
        spot = draw(st.integers(0, len(message) - 1))
        frames[index] = message[:spot] + bytes([message[spot] ^ 0xFF]) + message[spot + 1 :]
    elif how == "length":
        total = draw(st.sampled_from([0, 15, 16, len(message) + 1, 2**24, 2**32 - 1]))
        frames[index] = struct.pack(">I", total) + message[4:]
    elif how == "headers":
        # A header of an unknown value type, or a header length past the message.
        spot = 12
        frames[index] = (
            message[:spot] + draw(st.sampled_from([b"\x05:bad\x63", b"\xff"])) + (message[spot:])
        )
    else:
        del frames[index]
    return b"".join(frames)


@st.composite
def broken_answers(draw, recorded: Answer) -> Answer:
    """The recorded answer broken one way, its status and framing too."""
    content_type = recorded.headers.get("content-type", "")
    if content_type.startswith("application/vnd.amazon.eventstream"):
        body = draw(broken_event_stream(recorded.body))
    elif content_type.startswith("text/event-stream"):
        body = draw(broken_sse(recorded.body))
    else:
        body = draw(broken_json(recorded.body))
    framing = draw(st.sampled_from(["whole"] * 6 + ["short", "status", "type", "not http"]))
    answer = Answer(recorded.status, dict(recorded.headers), body)
    if framing == "short":  # declares more than it sends, then closes
        answer.declared = len(body) + draw(st.integers(1, 1000))
    elif framing == "status":
        # (Not 429 nor 401: they put the key in a cool-down, and the next
        # examples would not reach the provider; tests/test_upstream_errors.py.)
        answer.status = draw(st.sampled_from([201, 204, 299, 400, 404, 500, 503, 999]))
    elif framing == "type":
        answer.headers["content-type"] = draw(
            st.sampled_from(["text/html", "application/json", "text/event-stream", ""])
        )
    elif framing == "not http":
        answer.raw = draw(
            st.sampled_from([b"", b"garbage\r\n\r\n", b"HTTP/1.1 200\r\n", body[:100]])
        )
    return answer


# --- the client's side ------------------------------------------------------------------


def well_formed_stream(door: str, text: str) -> bool:
    """A complete SSE answer of the client's format: every event's data is
    JSON, and the last one ends the stream or reports an error."""
    datas = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    if not datas:
        return False
    for data in datas:
        if data != "[DONE]":
            try:
                orjson.loads(data)
            except orjson.JSONDecodeError:
                return False
    if door == "openai":
        return datas[-1] == "[DONE]" or "error" in orjson.loads(datas[-1])
    last = orjson.loads(datas[-1])
    return isinstance(last, dict) and last.get("type") in ("message_stop", "error")


def well_formed_answer(door: str, response: httpx.Response) -> bool:
    body = response.json()
    if door == "openai":
        return isinstance(body.get("choices"), list) and isinstance(body["choices"][0], dict)
    return body.get("type") == "message" and isinstance(body.get("content"), list)


def error_envelope(door: str, response: httpx.Response) -> dict:
    body = response.json()
    if door == "anthropic":
        assert body.get("type") == "error", response.text[:300]
    error = body.get("error")
    assert isinstance(error, dict) and isinstance(error.get("message"), str), response.text[:300]
    return error


@dataclass
class Run:
    gateway: GatewayProcess
    provider: FuzzingProvider
    key: str
    kind: str
    seen: Counter = field(default_factory=Counter)
    tags: list[str] = field(default_factory=list)
    recorded: dict[tuple[str, bool], Answer] = field(default_factory=dict)
    slowest: float = 0.0

    def send(self, door: str, stream: bool) -> httpx.Response:
        path, body = DOORS[door]
        tag = new_tag()
        self.tags.append(tag)
        started = time.monotonic()
        response = self.gateway.client.post(
            path,
            json={**body, "model": f"fz-{self.kind}", "max_tokens": 8, "stream": stream},
            headers={"authorization": f"Bearer {self.key}", "x-request-id": tag},
            timeout=30,
        )
        self.slowest = max(self.slowest, time.monotonic() - started)
        return response

    def answer_of(self, door: str, stream: bool) -> Answer:
        """The mock's real answer to this request, relayed once and kept."""
        if (door, stream) not in self.recorded:
            self.provider.answer = None
            response = self.send(door, stream)
            assert response.status_code == 200, response.text[:300]
            assert self.provider.recorded is not None
            self.recorded[door, stream] = self.provider.recorded
        return self.recorded[door, stream]


def check(run: Run, door: str, stream: bool) -> None:
    response = run.send(door, stream)
    status = response.status_code
    run.seen[status] += 1
    assert status != 500, response.text[:300]
    if status == 200 and door == run.kind:
        # Passed through: the provider's answer is relayed as it came.
        pass
    elif status == 200 and stream:
        assert well_formed_stream(door, response.text), response.text[-500:]
    elif status == 200:
        assert well_formed_answer(door, response), response.text[:300]
    else:
        error = error_envelope(door, response)
        assert error.get("code") != "gateway_error", response.text[:300]
        assert error.get("message") != CATCH_ALL, response.text[:300]
        assert status < 500 or status in UPSTREAM_STATUSES, response.text[:300]


def every_request_recorded(run: Run, timeout: float = 30.0) -> None:
    from governance.models import RequestRecord

    deadline = time.monotonic() + timeout
    while True:
        found = set(
            RequestRecord.objects.filter(client_request_id__in=run.tags).values_list(
                "client_request_id", flat=True
            )
        )
        if len(found) == len(set(run.tags)) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = set(run.tags) - found
    assert not missing, f"{len(missing)} of {len(run.tags)} requests have no usage record"


@pytest.fixture(params=sorted(PROVIDERS))
def fuzzing(request, demo, celery_worker):
    """A gateway whose route ``fz-<kind>`` goes to the fuzzing provider, which
    speaks the wire format of ``kind`` (as relayed from the mock)."""
    kind = request.param
    prefix, options, provider_model, secret = PROVIDERS[kind]
    provider = FuzzingProvider(demo.mock.url)
    row = services.provider_create(
        name=f"fuzzing-{kind}",
        kind=kind,
        base_url=f"{provider.url}{prefix}",
        allow_private_network=True,
        options={**options, "read_timeout": "1", "first_byte_timeout": "5"},
    )
    services.provider_key_create(provider=row, name="primary", secret=secret)
    services.model_route_create(name=f"fz-{kind}", provider=row, provider_model=provider_model)
    demo.sync()
    gateway = GatewayProcess(gateway_env(LOG_LEVEL="WARNING"))
    gateway.wait_for_revision(selectors.config_revision())
    run = Run(gateway=gateway, provider=provider, key=demo.key, kind=kind)
    yield run
    gateway.close()
    provider.close()


@pytest.mark.timeout(900)
def test_a_broken_provider_answer_reaches_the_client_well_formed_or_as_an_error(fuzzing):
    run = fuzzing

    @FUZZ
    @given(door=st.sampled_from(sorted(DOORS)), stream=st.booleans(), data=st.data())
    def example(door, stream, data):
        run.provider.answer = data.draw(broken_answers(run.answer_of(door, stream)))
        check(run, door, stream)

    example()
    log = run.gateway.log()
    assert "Traceback" not in log, log[-3000:]
    assert run.slowest < SLOWEST, run.slowest
    every_request_recorded(run)
    add_row(
        "Upstream",
        f"fuzz: broken {NAMES[run.kind]} answers (truncated, wrong types, missing keys, "
        "invalid UTF-8, malformed SSE or event-stream frames, huge fields, wrong status or "
        f"framing), through both front doors, streamed and not (hypothesis, {EXAMPLES} examples)",
        requests=sum(run.seen.values()),
        client_saw=statuses_text(run.seen)
        + f"; no 500, slowest {run.slowest:.1f} s, complete answers or errors in the envelope",
        lost="nothing: a usage record for every request",
    )


def test_a_token_count_past_what_a_record_holds_is_kept_at_the_bound(demo, celery_worker):
    """A provider claiming 2**40 tokens: the request is answered, and its usage
    record is written (a 32-bit column would refuse the number itself)."""
    from governance.models import RequestRecord
    from proxy.admission import MAX_TOKENS
    from tests.ledger_helpers import record_tagged

    provider = FuzzingProvider(demo.mock.url)
    try:
        row = services.provider_create(
            name="counting", kind="openai", base_url=f"{provider.url}/v1",
            allow_private_network=True,
        )  # fmt: skip
        services.provider_key_create(provider=row, name="primary", secret="sk-mock-fuzz-0002")
        services.model_route_create(name="fz-count", provider=row, provider_model="mock-gpt")
        demo.sync()
        answer = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "mock-gpt",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2**40, "completion_tokens": 3, "total_tokens": 2**40 + 3},
        }  # fmt: skip
        provider.answer = Answer(200, {"content-type": "application/json"}, orjson.dumps(answer))
        tag = new_tag()
        response = demo.gateway.client.post(
            "/v1/chat/completions",
            json={"model": "fz-count", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {demo.key}", "x-request-id": tag},
        )
        assert response.status_code == 200, response.text
        record: RequestRecord = record_tagged(tag)
        assert (record.input_tokens, record.output_tokens) == (MAX_TOKENS, 3)
    finally:
        provider.close()
