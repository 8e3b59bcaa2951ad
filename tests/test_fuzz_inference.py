"""Fuzzing the inference endpoints of a real gateway (hypothesis): malformed,
truncated, deeply nested and huge JSON, wrong types, invalid UTF-8. Every
answer is a status below 500 or an upstream error, in the client's envelope,
in bounded time; the gateway's log shows no unhandled exception.

Examples per test: ``GATEWAY_FUZZ_EXAMPLES`` (a short run by default; ``make
reliability`` runs many more).
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys import selectors, services
from proxy.mock_provider import bedrock as mock_bedrock
from tests.conftest import gateway_env
from tests.fuzz_helpers import CATCH_ALL, EXAMPLES, FUZZ, UPSTREAM_STATUSES
from tests.processes import GatewayProcess
from tests.reliability_report import add_row, statuses_text

OPENAI_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"]
ANTHROPIC_PATHS = ["/anthropic/v1/messages", "/anthropic/v1/messages/count_tokens"]
PATHS = OPENAI_PATHS + ANTHROPIC_PATHS
VALID = {
    "/v1/chat/completions": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
    },
    "/v1/completions": {"model": "gpt-4o-mini", "prompt": "hi", "max_tokens": 4},
    "/v1/embeddings": {"model": "gpt-4o-mini", "input": "hi"},
    "/v1/responses": {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 4},
    "/anthropic/v1/messages": {
        "model": "gpt-4o-mini",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/anthropic/v1/messages/count_tokens": {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
    },
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=25,
)
# Names the endpoints read, so that wrong types reach their parsers.
FIELDS = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "stream",
    "stream_options",
    "temperature",
    "tools",
    "tool_choice",
    "response_format",
    "input",
    "prompt",
    "system",
    "n",
    "stop",
    "metadata",
    "user",
    "fallbacks",
    "timeout",
    "stop_sequences",
    "top_p",
    "top_k",
    "thinking",
    "output_config",
    "encoding_format",
    "dimensions",
]
# Wrong types, one of each kind, for the grid below.
ODD_VALUES = [
    None,
    True,
    -1,
    0,
    10**20,
    2**70,
    1.5,
    1e300,
    "x",
    "",
    [],
    [1],
    [None],
    [[]],
    {},
    {"a": 1},
    {"": None},
]
MESSAGE_FIELDS = ["role", "content", "name", "tool_calls", "tool_call_id", "type"]


@pytest.fixture
def fuzzed(demo):
    server = GatewayProcess(gateway_env(LOG_LEVEL="WARNING"))
    server.wait_for_revision(selectors.config_revision())
    server.seen = Counter()
    yield server
    server.close()


def encode(value) -> bytes:
    # The standard library's encoder: integers past 64 bits are JSON too.
    return json.dumps(value).encode()


def envelope_ok(path: str, response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if path.startswith("/anthropic"):
        return body.get("type") == "error" and isinstance(body.get("error"), dict)
    return isinstance(body.get("error"), dict) and "message" in body["error"]


def check(server, path: str, content: bytes, headers: dict | None = None) -> None:
    response = server.client.post(
        path,
        content=content,
        headers={
            "authorization": f"Bearer {server.key}",
            "content-type": "application/json",
            **(headers or {}),
        },
        timeout=15,
    )
    server.seen[response.status_code] += 1
    status = response.status_code
    assert status != 500, response.text
    if status >= 400:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return
        assert envelope_ok(path, response), (status, response.text[:300])
        error = response.json()["error"]
        # The consumer's catch-all for an exception nothing handled.
        assert error.get("code") != "gateway_error", response.text[:300]
        assert error.get("message") != CATCH_ALL, response.text[:300]
        if status >= 500:
            assert status in UPSTREAM_STATUSES, response.text[:300]


def no_unhandled_errors(server) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-3000:]


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_values)
def test_any_json_value_as_the_body(demo, fuzzed, path, body):
    fuzzed.key = demo.key
    check(fuzzed, path, encode(body))


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    field=st.sampled_from(FIELDS),
    value=json_values,
    stream=st.booleans(),
)
def test_a_valid_body_with_one_field_of_any_type(demo, fuzzed, path, field, value, stream):
    fuzzed.key = demo.key
    body = {**VALID[path], field: value}
    if stream and field != "stream":
        body["stream"] = True
    check(fuzzed, path, encode(body))


def test_every_field_of_every_endpoint_with_each_kind_of_wrong_value(demo, fuzzed):
    """A grid, not a sample: every (endpoint, field, odd value) once."""
    fuzzed.key = demo.key
    for path in PATHS:
        for field in FIELDS:
            for value in ODD_VALUES:
                check(fuzzed, path, encode({**VALID[path], field: value}))


# Blocks and parts whose fields are read when a request is translated to
# another provider's format, each with its well-formed value.
ANTHROPIC_BLOCKS = [
    {"type": "text", "text": "hi"},
    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "ok"}]},
    {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
]
OPENAI_PARTS = [
    {"type": "text", "text": "hi"},
    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
]
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def with_field(item: dict, field: str, value) -> dict:
    return {**item, field: value}


def nested_cases():
    """(path, body): one wrong value in an array element or a nested field."""
    messages, chat = VALID["/anthropic/v1/messages"], VALID["/v1/chat/completions"]
    turns = [{"role": "user", "content": "hi"}]
    for value in ODD_VALUES:
        for path, field in [
            ("/v1/completions", "prompt"),
            ("/v1/embeddings", "input"),
            ("/v1/responses", "input"),
            ("/v1/chat/completions", "stop"),
            ("/v1/chat/completions", "tools"),
            ("/anthropic/v1/messages", "system"),
            ("/anthropic/v1/messages", "tools"),
            ("/anthropic/v1/messages", "stop_sequences"),
        ]:
            yield path, {**VALID[path], field: [value]}
            yield path, {**VALID[path], field: [[value]]}
        for block in ANTHROPIC_BLOCKS:
            for field in block:
                wrong = [with_field(block, field, value)]
                yield (
                    "/anthropic/v1/messages",
                    {**messages, "messages": [{"role": "user", "content": wrong}]},
                )
                answered = [*turns, {"role": "assistant", "content": wrong}, *turns]
                yield "/anthropic/v1/messages", {**messages, "messages": answered}
        yield "/anthropic/v1/messages", {**messages, "system": [{"type": "text", "text": value}]}
        for role in ("user", "assistant", "system", "tool"):
            for part in OPENAI_PARTS:
                for field in part:
                    content = [with_field(part, field, value)]
                    yield (
                        "/v1/chat/completions",
                        {**chat, "messages": [{"role": role, "content": content}]},
                    )
        for field in ("function", "id", "type"):
            call = with_field(CALL, field, value)
            asked = [{"role": "assistant", "content": None, "tool_calls": [call]}, *turns]
            yield "/v1/chat/completions", {**chat, "messages": asked}
            yield "/v1/chat/completions", {**chat, "tools": [with_field(TOOL, field, value)]}
        for field in ("name", "arguments"):
            call = {**CALL, "function": with_field(CALL["function"], field, value)}
            asked = [{"role": "assistant", "content": None, "tool_calls": [call]}, *turns]
            yield "/v1/chat/completions", {**chat, "messages": asked}
            tool = {**TOOL, "function": with_field(TOOL["function"], field, value)}
            yield "/v1/chat/completions", {**chat, "tools": [tool]}


@pytest.fixture
def fuzzed_across(claude):
    """A gateway with an OpenAI and an Anthropic provider: requests are passed
    through to one and translated for the other."""
    server = GatewayProcess(gateway_env(LOG_LEVEL="WARNING"))
    server.wait_for_revision(selectors.config_revision())
    server.seen = Counter()
    server.key = claude.key
    yield server
    server.close()


@pytest.mark.timeout(900)
def test_every_array_element_and_nested_field_with_each_kind_of_wrong_value(fuzzed_across):
    """A grid: a wrong value in each array's elements and in each field of the
    blocks, parts, tools and tool calls that translation reads, sent to both
    providers (passed through to one wire format, translated for the other)."""
    for path, body in nested_cases():
        for model in ("gpt-4o-mini", "claude-sonnet"):
            check(fuzzed_across, path, encode({**body, "model": model}))


# The providers whose wire formats both front doors are translated into:
# (kind, the mock's base URL path, options, provider model, key).
TRANSLATED = {
    "gemini": ("gemini", "/v1beta", {}, "gemini-2.5-flash", "AIza-mock-0001"),
    "bedrock": (
        "bedrock",
        "/bedrock",
        {"region": "us-east-1"},
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        f"{mock_bedrock.ACCESS_KEY_ID}:{mock_bedrock.SECRET_ACCESS_KEY}",
    ),
    "cohere": ("cohere", "", {}, "command-a-03-2025", "cohere-key-0001"),
}


@pytest.fixture(params=sorted(TRANSLATED))
def fuzzed_translated(request, demo):
    """A gateway with one more provider, of a wire format neither front door
    speaks (every request is translated), routed as ``translated``."""
    kind, prefix, options, provider_model, secret = TRANSLATED[request.param]
    provider = services.provider_create(
        name=request.param,
        kind=kind,
        base_url=f"{demo.mock.url}{prefix}",
        allow_private_network=True,
        options=options,
    )
    services.provider_key_create(provider=provider, name="primary", secret=secret)
    services.model_route_create(name="translated", provider=provider, provider_model=provider_model)
    demo.sync()
    server = GatewayProcess(gateway_env(LOG_LEVEL="WARNING"))
    server.wait_for_revision(selectors.config_revision())
    server.seen = Counter()
    server.key = demo.key
    server.provider = request.param
    yield server
    server.close()


@pytest.mark.timeout(900)
def test_every_array_element_and_nested_field_with_each_kind_of_wrong_value_translated(
    fuzzed_translated,
):
    """The same grid, sent to a Gemini, a Bedrock (Converse, signed) and a
    Cohere provider: every request is translated, streamed or not."""
    for path, body in nested_cases():
        check(fuzzed_translated, path, encode({**body, "model": "translated"}))


@FUZZ
@given(
    path=st.sampled_from(["/v1/chat/completions", "/anthropic/v1/messages"]),
    field=st.sampled_from(MESSAGE_FIELDS),
    value=json_values,
)
def test_a_message_with_one_field_of_any_type(demo, fuzzed, path, field, value):
    fuzzed.key = demo.key
    body = {**VALID[path], "messages": [{"role": "user", "content": "hi", field: value}]}
    check(fuzzed, path, encode(body))


@FUZZ
@given(path=st.sampled_from(PATHS), data=st.data())
def test_a_truncated_body(demo, fuzzed, path, data):
    fuzzed.key = demo.key
    valid = orjson.dumps({**VALID[path], "stream": data.draw(st.booleans())})
    cut = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    check(fuzzed, path, valid[:cut])


@FUZZ
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=300))
def test_arbitrary_bytes_and_invalid_utf8(demo, fuzzed, path, raw):
    fuzzed.key = demo.key
    check(fuzzed, path, raw)


@FUZZ
@given(path=st.sampled_from(PATHS), data=st.data())
def test_invalid_utf8_inside_a_valid_body(demo, fuzzed, path, data):
    fuzzed.key = demo.key
    valid = orjson.dumps(VALID[path])
    junk = data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28"]))
    spot = valid.index(b'"hi"') + 2
    check(fuzzed, path, valid[:spot] + junk + valid[spot:])


def test_deeply_nested_and_huge_bodies(demo, fuzzed):
    fuzzed.key = demo.key
    cases = {
        "nested lists 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
        "nested objects 50,000 deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "messages nested 2,000 deep": orjson.dumps(VALID["/v1/chat/completions"]).replace(
            b'"hi"', b"[" * 2000 + b'"hi"' + b"]" * 2000
        ),
        "a 3 MB message": orjson.dumps(
            {
                **VALID["/v1/chat/completions"],
                "messages": [{"role": "user", "content": "x" * 3_000_000}],
            }
        ),
        "100,000 messages": orjson.dumps(
            {
                **VALID["/v1/chat/completions"],
                "messages": [{"role": "user", "content": "a"}] * 100_000,
            }
        ),
        "a 5 MB body (over the limit)": b'{"model": "' + b"x" * 5_000_000 + b'"}',
        "a number with 100,000 digits": b'{"model": "gpt-4o-mini", "max_tokens": '
        + b"9" * 100_000
        + b', "messages": []}',
    }
    for path in PATHS:
        for content in cases.values():
            check(fuzzed, path, content)
    no_unhandled_errors(fuzzed)
    add_row(
        "Bad input",
        "deeply nested (to 100,000 levels), huge (3 to 5 MB, 100,000 messages, 100,000-digit "
        f"numbers) bodies on {len(PATHS)} endpoints",
        requests=sum(fuzzed.seen.values()),
        client_saw=statuses_text(fuzzed.seen) + "; no 500, errors in the client's envelope",
        lost="nothing",
    )


@pytest.fixture(autouse=True)
def _report(request):
    yield
    funcargs = request.node.funcargs
    server = (
        funcargs.get("fuzzed") or funcargs.get("fuzzed_across") or funcargs.get("fuzzed_translated")
    )
    name = request.node.originalname
    if server is None or name in (
        "test_deeply_nested_and_huge_bodies",
        "test_a_field_no_translation_expects_is_a_400_for_every_provider",
    ):
        return
    no_unhandled_errors(server)
    described = name.removeprefix("test_").removesuffix("_translated").replace("_", " ")
    if "fuzzed_translated" in funcargs:
        described += f", translated for a {server.provider.capitalize()} provider"
    add_row(
        "Bad input",
        f"fuzz: {described}"
        + ("" if name.startswith("test_every_") else f" (hypothesis, {EXAMPLES} examples)"),
        requests=sum(server.seen.values()),
        client_saw=statuses_text(server.seen) + "; no 500, no hang, errors in the envelope",
        lost="nothing",
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # The legacy completion's stop is copied into the chat request.
        ("/v1/completions", {"prompt": "hi", "stop": 5}),
        # A tool_choice naming its function by a string, not an object.
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [TOOL],
                "tool_choice": {"type": "function", "function": "f"},
            },
        ),
    ],
)
def test_a_field_no_translation_expects_is_a_400_for_every_provider(fuzzed_translated, path, body):
    response = fuzzed_translated.client.post(
        path,
        json={**body, "model": "translated", "max_tokens": 4},
        headers={"authorization": f"Bearer {fuzzed_translated.key}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] != "gateway_error"
