"""Fast mock LLM provider speaking the OpenAI and Anthropic wire formats.

Used by the test-suite, the demo and the benchmark as a stand-in for real upstream providers.
It deliberately imports nothing from Django so that it starts in a fraction of a second::

    python -m proxy.mock_provider --host 127.0.0.1 --port 9100 [behaviour flags]
    python manage.py mock_provider --host 127.0.0.1 --port 9100 [behaviour flags]

Provider endpoints (each also served under the ``/openai`` and ``/anthropic`` prefixes):

* ``POST /v1/chat/completions``           OpenAI Chat Completions (stream and non-stream, tools)
* ``POST /v1/embeddings``                 OpenAI embeddings (``float`` and ``base64``)
* ``GET  /v1/models`` (``/v1/models/{id}``) model list (Anthropic shape under ``/anthropic``)
* ``POST /v1/messages``                   Anthropic Messages (stream and non-stream, tools)
* ``POST /v1/messages/count_tokens``      Anthropic token counting

Control API (never counted or recorded):

* ``GET /_mock/stats``, ``POST /_mock/reset``, ``GET /_mock/requests?limit=N``,
  ``GET|POST|DELETE /_mock/rules``, ``DELETE /_mock/rules/{id}``, ``GET /_mock/health``

Behaviour (latency, failures, stalls...) comes from server-wide defaults, overridden by the first
live matching rule, overridden by an ``x-mock-behaviour: {json}`` request header. See
:class:`Behaviour` for the fields and :meth:`MockProvider.add_rule` for the rule format.

Token model (deterministic): input tokens are the whitespace-separated words of all text
content plus 3 per message (at least 1); the answer is ``"word0 word1 ..."`` with one word per
token, so usage always equals what was streamed. A request for structured output
(OpenAI's ``response_format`` ``json_object`` / ``json_schema``, Anthropic's
``output_config.format``) is answered with one token: a JSON value fitting the schema.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import logging
import math
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web

PREFIXES: tuple[str, ...] = ("", "/openai", "/anthropic")
MODELS: tuple[str, ...] = ("mock-gpt", "mock-gpt-mini", "mock-claude", "mock-embed")
MODEL_CREATED = 1_700_000_000
DEFAULT_EMBEDDING_DIMS = 8
MAX_EMBEDDING_DIMS = 65_536
TOOL_FRAGMENT_CHARS = 8
# How often a stalled stream checks whether its client has gone away.
STALL_POLL_S = 0.05

JSON_HEADERS: dict[str, str] = {"Content-Type": "application/json"}
SSE_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}

# Trailing whitespace sticks to the last word so "a b " is two tokens, like "a b".
_TOKEN_SPLIT = re.compile(r"\s*\S+(?:\s+$)?|\s+")


# --------------------------------------------------------------------------------------------
# Behaviour and rules
# --------------------------------------------------------------------------------------------


def _nonneg_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError("expected a non-negative number")
    if math.isinf(value):
        raise ValueError("expected a finite number")
    return float(value)


def _nonneg_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected a non-negative integer")
    return value


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError("expected an HTTP error status between 400 and 599")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _malformed(value: Any) -> str:
    if value not in ("json", "sse"):
        raise ValueError('expected "json" or "sse"')
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _answer(value: Any) -> tuple[str, ...]:
    """The answer's tokens: a string's words, or a list of strings as they are."""
    if isinstance(value, str) and value:
        return tuple(_TOKEN_SPLIT.findall(value))
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ValueError("expected a non-empty string or list of non-empty strings")


def _tool_arguments(value: Any) -> tuple[str, ...]:
    """A tool call's arguments: a JSON object (streamed in fragments of
    :data:`TOOL_FRAGMENT_CHARS`), or its JSON text as a list of fragments,
    one streamed delta each, as given."""
    if isinstance(value, dict):
        text = orjson.dumps(value).decode()
        return tuple(
            text[i : i + TOOL_FRAGMENT_CHARS] for i in range(0, len(text), TOOL_FRAGMENT_CHARS)
        )
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        try:
            parsed = orjson.loads("".join(value))
        except orjson.JSONDecodeError:
            raise ValueError("the fragments must join into a JSON object") from None
        if isinstance(parsed, dict):
            return tuple(value)
    raise ValueError("expected a JSON object or a list of strings joining into one")


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


_FIELD_PARSERS: dict[str, Callable[[Any], Any]] = {
    "latency_ms": _nonneg_float,
    "ttft_ms": _nonneg_float,
    "inter_token_ms": _nonneg_float,
    "output_tokens": _nonneg_int,
    "status": _optional(_status),
    "retry_after": _optional(_nonneg_float),
    "reset": _bool,
    "stall_after_tokens": _optional(_nonneg_int),
    "malformed": _optional(_malformed),
    "slow_first_byte_ms": _nonneg_float,
    "body_bytes": _nonneg_int,
    "error_message": _optional(_text),
    "answer": _optional(_answer),
    "tool_arguments": _optional(_tool_arguments),
}


def parse_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Validate behaviour fields from JSON; raises ``ValueError`` naming the bad field."""
    parsed: dict[str, Any] = {}
    for key, value in overrides.items():
        parser = _FIELD_PARSERS.get(key)
        if parser is None:
            raise ValueError(f"unknown behaviour field {key!r}")
        try:
            parsed[key] = parser(value)
        except ValueError as exc:
            raise ValueError(f"invalid {key!r}: {exc}") from None
    return parsed


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the mock answers one request.

    Delays are in milliseconds. ``latency_ms`` delays non-streamed answers, injected errors
    and resets; ``ttft_ms`` delays the first streamed event (headers go out at once);
    ``inter_token_ms`` separates streamed tokens; ``slow_first_byte_ms`` delays everything,
    response headers included. ``output_tokens`` is the answer length before ``max_tokens``.
    ``status`` answers with that HTTP error in the provider's envelope (``error_message``
    replaces the default message); ``retry_after`` adds a ``Retry-After`` header; ``reset``
    aborts the TCP connection (RST) without answering; ``stall_after_tokens`` makes a stream
    hang after that many tokens (after all of them if the answer is shorter) until the client
    leaves; ``malformed`` is ``"json"`` (truncated non-stream body, status 200) or ``"sse"`` (a
    non-JSON ``data:`` event after the first token); ``body_bytes`` pads non-stream text
    content to at least that many bytes. ``answer`` replaces the generated text: a string
    (streamed word by word) or a list of strings (one streamed delta each, as given), so a
    test can place a match across deltas; its tokens count as the output.
    ``tool_arguments`` replaces the arguments of a tool-call answer (a JSON object, or its
    JSON text as a list of fragments streamed one delta each, as given).
    """

    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    inter_token_ms: float = 0.0
    output_tokens: int = 16
    status: int | None = None
    retry_after: float | None = None
    reset: bool = False
    stall_after_tokens: int | None = None
    malformed: str | None = None
    slow_first_byte_ms: float = 0.0
    body_bytes: int = 0
    error_message: str | None = None
    answer: tuple[str, ...] | None = None
    tool_arguments: tuple[str, ...] | None = None

    def merged(self, overrides: Mapping[str, Any]) -> Behaviour:
        """Return a copy with the (unvalidated, JSON-shaped) ``overrides`` applied."""
        if not overrides:
            return self
        return replace(self, **parse_overrides(overrides))


BEHAVIOUR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Behaviour))


@dataclass(slots=True)
class Rule:
    """A behaviour override applied to matching requests, optionally only ``times`` times."""

    id: str
    overrides: dict[str, Any]
    path: str | None = None
    model: str | None = None
    api_key: str | None = None
    remaining: int | None = None
    hits: int = 0

    @classmethod
    def from_json(cls, rule_id: str, obj: Any) -> Rule:
        """Build a rule from its JSON form; raises ``ValueError`` when it is malformed."""
        if not isinstance(obj, dict):
            raise ValueError("a rule must be a JSON object")
        obj = dict(obj)
        match = obj.pop("match", None) or {}
        if not isinstance(match, dict):
            raise ValueError("'match' must be an object")
        unknown = set(match) - {"path", "model", "api_key"}
        if unknown:
            raise ValueError(f"unknown match keys: {sorted(unknown)}")
        for key, value in match.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"match.{key} must be a string")
        times = obj.pop("times", None)
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError("'times' must be a positive integer")
        overrides = obj.pop("behaviour", None) or {}
        if not isinstance(overrides, dict):
            raise ValueError("'behaviour' must be an object")
        overrides = {**overrides, **obj}
        parse_overrides(overrides)
        return cls(
            id=rule_id,
            overrides=overrides,
            path=match.get("path"),
            model=match.get("model"),
            api_key=match.get("api_key"),
            remaining=times,
        )

    def matches(self, path: str, model: Any, api_keys: Sequence[str]) -> bool:
        """Whether this rule applies to a request (all given match fields must agree)."""
        if self.path is not None and self.path not in path:
            return False
        if self.model is not None and self.model != model:
            return False
        return self.api_key is None or self.api_key in api_keys

    def to_json(self) -> dict[str, Any]:
        """JSON view used by the control API."""
        match = {
            k: v
            for k, v in (("path", self.path), ("model", self.model), ("api_key", self.api_key))
            if v is not None
        }
        return {
            "id": self.id,
            "match": match,
            "times": self.remaining,
            "hits": self.hits,
            **self.overrides,
        }


# --------------------------------------------------------------------------------------------
# Provider state
# --------------------------------------------------------------------------------------------


class MockProvider:
    """State of one mock server: default behaviour, rules, counters and recorded requests.

    ``MockProvider(latency_ms=5, output_tokens=4)`` sets server-wide defaults; a ready-made
    :class:`Behaviour` can be passed as ``defaults``. ``record_limit`` bounds the ring buffer of
    recorded requests (0 disables recording).
    """

    def __init__(
        self,
        defaults: Behaviour | None = None,
        *,
        record_limit: int = 1000,
        **behaviour: Any,
    ) -> None:
        self.defaults: Behaviour = (defaults or Behaviour()).merged(behaviour)
        self.record_limit = record_limit
        self.requests: deque[dict[str, Any]] = deque(maxlen=max(record_limit, 1))
        self.rules: list[Rule] = []
        self.total = 0
        self.by_path: dict[str, int] = {}
        self.disconnects = 0
        self.streams_open = 0
        self._rule_seq = 0

    # -- rules --------------------------------------------------------------------------

    def add_rule(self, obj: Mapping[str, Any]) -> Rule:
        """Append a rule given in its JSON form and return it.

        Format: ``{"match": {"path": substring, "model": exact, "api_key": exact},
        "times": N, <behaviour fields>...}``; every part is optional. Behaviour fields may also
        be nested under ``"behaviour"``. The first live matching rule wins.
        """
        self._rule_seq += 1
        rule = Rule.from_json(f"rule_{self._rule_seq}", obj)
        self.rules.append(rule)
        return rule

    def delete_rule(self, rule_id: str) -> bool:
        """Remove one rule by id; returns whether it existed."""
        for index, rule in enumerate(self.rules):
            if rule.id == rule_id:
                del self.rules[index]
                return True
        return False

    def clear_rules(self) -> None:
        """Remove every rule."""
        self.rules.clear()

    def match_rule(self, path: str, model: Any, api_keys: Sequence[str]) -> Rule | None:
        """Find the first live matching rule and consume one of its uses."""
        for index, rule in enumerate(self.rules):
            if rule.matches(path, model, api_keys):
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        del self.rules[index]
                return rule
        return None

    # -- counters and recording ------------------------------------------------------------

    def reset(self) -> None:
        """Clear counters, recorded requests and rules, restarting rule ids (defaults stay)."""
        self.total = 0
        self.by_path.clear()
        self.disconnects = 0
        self.requests.clear()
        self.rules.clear()
        self._rule_seq = 0

    def stats(self) -> dict[str, Any]:
        """Counters as returned by ``GET /_mock/stats``."""
        return {
            "requests": self.total,
            "by_path": dict(self.by_path),
            "disconnects": self.disconnects,
            "streams_open": self.streams_open,
            "rules": len(self.rules),
        }

    def recorded(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` recorded requests, oldest first.

        Each is ``{"time", "method", "path", "query", "headers" (lower-cased names, values
        kept verbatim, including Authorization / x-api-key / api-key), "api_key" (the key found
        in those headers), "body" (parsed JSON or null), "raw_body" (text when the body was not
        JSON), "rule" (id of the rule applied, if any)}``.
        """
        items = list(self.requests)
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        return [_public_record(item) for item in items]

    def note(self, request: web.Request, body: Any, raw: bytes) -> dict[str, Any] | None:
        """Count a provider request and record it in the ring buffer."""
        path = request.path
        self.total += 1
        self.by_path[path] = self.by_path.get(path, 0) + 1
        if self.record_limit <= 0:
            return None
        # Raw pieces only: decoding headers is deferred to the (rare) control-API read.
        record = {
            "time": time.time(),
            "method": request.method,
            "path": path,
            "query": request.query_string,
            "raw_headers": request.raw_headers,
            "body": body,
            "raw": raw if body is None else b"",
            "rule": None,
        }
        self.requests.append(record)
        return record


def _public_record(record: dict[str, Any]) -> dict[str, Any]:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in record["raw_headers"]}
    keys = _api_keys(headers)
    raw: bytes = record["raw"]
    return {
        "time": record["time"],
        "method": record["method"],
        "path": record["path"],
        "query": record["query"],
        "headers": headers,
        "api_key": keys[0] if keys else None,
        "body": record["body"],
        "raw_body": raw.decode("utf-8", "replace") if raw else None,
        "rule": record["rule"],
    }


def _api_keys(headers: Mapping[str, str]) -> list[str]:
    """Provider keys a request carries: Authorization, x-api-key, api-key, x-goog-api-key.

    ``headers`` is a request's (case-insensitive) or a lower-cased copy.
    """
    keys: list[str] = []
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            keys.append(value.strip())
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        value = headers.get(name)
        if value:
            keys.append(value)
    return keys


# --------------------------------------------------------------------------------------------
# Deterministic content
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _tokens(count: int) -> tuple[str, ...]:
    return tuple(f"word{i}" if i == 0 else f" word{i}" for i in range(count))


@lru_cache(maxsize=256)
def _joined(tokens: tuple[str, ...]) -> str:
    return "".join(tokens)


def _words(content: Any) -> int:
    """Whitespace-separated words in a message content (string or list of parts/blocks)."""
    if isinstance(content, str):
        return len(content.split())
    total = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                total += len(part.split())
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text.split())
                elif "content" in part:  # Anthropic tool_result blocks nest their content
                    total += _words(part["content"])
    return total


def count_input_tokens(messages: Any, system: Any = None) -> int:
    """The mock's input-token count: words of all text content + 3 per message, at least 1."""
    total = _words(system) if system is not None else 0
    if isinstance(messages, list):
        for message in messages:
            total += 3
            if isinstance(message, dict):
                total += _words(message.get("content"))
    return max(total, 1)


def _answer_tokens(
    wanted: int | tuple[str, ...], cap: int | None, stops: Sequence[str]
) -> tuple[tuple[str, ...], str | None, str | None]:
    """Tokens of the text answer (``wanted`` of them, or those given), why it ended
    early ("length"/"stop") and the stop hit."""
    count = wanted if isinstance(wanted, int) else len(wanted)
    capped = cap is not None and count > cap
    tokens = _tokens(cap if capped and cap is not None else count)
    if not isinstance(wanted, int):
        tokens = wanted[:cap] if capped else wanted
    if stops:
        text = _joined(tokens)
        hit: tuple[int, str] | None = None
        for stop in stops:
            pos = text.find(stop) if stop else -1
            if pos >= 0 and (hit is None or pos < hit[0]):
                hit = (pos, stop)
        if hit is not None:
            return tuple(_TOKEN_SPLIT.findall(text[: hit[0]])), "stop", hit[1]
    return tokens, ("length" if capped else None), None


def _placeholder(schema: Any, depth: int = 0) -> Any:
    """A value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return "mock"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _placeholder(options[0], depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    simple = {
        "string": "mock",
        "integer": 1,
        "number": 1,
        "boolean": True,
        "array": [],
        "null": None,
    }
    if kind in simple:
        return simple[kind]
    if kind == "object" or "properties" in schema:
        return _required_arguments(schema, depth + 1) if depth < 8 else {}
    return "mock"


def structured_units(schema: Any) -> tuple[str, ...]:
    """A JSON answer fitting ``schema`` (any JSON object when None), as one token."""
    value = _placeholder(schema) if isinstance(schema, dict) else {"answer": "word0"}
    return (orjson.dumps(value).decode(),)


def _openai_format(body: dict[str, Any]) -> tuple[bool, Any] | str:
    """Whether ``response_format`` asks for JSON and with which schema, or what
    is wrong with it (OpenAI's validation message)."""
    value = body.get("response_format")
    if value is None:
        return False, None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return False, None
    if kind == "json_object":
        return True, None
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return "Missing required parameter: 'response_format.json_schema.name'."
        schema = spec.get("schema")
        if schema is not None and not isinstance(schema, dict):
            return "Invalid type for 'response_format.json_schema.schema': expected an object."
        return True, schema if schema is not None else {"type": "object"}
    return (
        "Invalid value for 'response_format.type': expected one of 'text', "
        "'json_object' or 'json_schema'."
    )


def _anthropic_format(body: dict[str, Any]) -> tuple[bool, Any] | str:
    """Whether ``output_config.format`` asks for JSON and with which schema, or
    what is wrong with it (Anthropic's validation message)."""
    config = body.get("output_config")
    if config is None:
        return False, None
    if not isinstance(config, dict):
        return "output_config: Input should be a valid dictionary"
    fmt = config.get("format")
    if fmt is None:
        return False, None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return "output_config.format.type: Input should be 'json_schema'"
    if not isinstance(fmt.get("schema"), dict):
        return "output_config.format.schema: Field required"
    return True, fmt["schema"]


def _required_arguments(schema: Any, depth: int = 0) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    required = schema.get("required")
    if not isinstance(required, list):
        return {}
    return {
        name: _placeholder(props.get(name), depth) for name in required if isinstance(name, str)
    }


class _ToolCall:
    """A tool-call answer: name, arguments and how they are streamed."""

    __slots__ = ("arguments", "fragments", "name")

    def __init__(self, name: str, schema: Any) -> None:
        self.name = name
        self.arguments: dict[str, Any] = _required_arguments(schema)
        text = orjson.dumps(self.arguments).decode()
        self.fragments: tuple[str, ...] = tuple(
            text[i : i + TOOL_FRAGMENT_CHARS] for i in range(0, len(text), TOOL_FRAGMENT_CHARS)
        )

    @property
    def arguments_json(self) -> str:
        return "".join(self.fragments)

    def given(self, fragments: tuple[str, ...] | None) -> _ToolCall:
        """This call with the arguments a behaviour chose (``tool_arguments``), if any."""
        if fragments:
            self.fragments = fragments
            self.arguments = orjson.loads("".join(fragments))
        return self


def _openai_tool(body: dict[str, Any]) -> _ToolCall | None:
    tools = body.get("tools")
    messages = body.get("messages")
    if not tools or not isinstance(tools, list) or not isinstance(messages, list):
        return None
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    wanted = None
    if isinstance(choice, dict):
        function = choice.get("function")
        wanted = function.get("name") if isinstance(function, dict) else None
    functions = [
        t.get("function")
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    functions = [f for f in functions if isinstance(f.get("name"), str)]
    if not functions:
        return None
    chosen = next((f for f in functions if f["name"] == wanted), functions[0])
    return _ToolCall(chosen["name"], chosen.get("parameters"))


def _anthropic_tool(body: dict[str, Any]) -> _ToolCall | None:
    tools = body.get("tools")
    messages = body.get("messages")
    if not tools or not isinstance(tools, list) or not isinstance(messages, list):
        return None
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    # A user turn carrying tool results is the end of a tool round-trip: answer with text.
    if isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        return None
    choice = body.get("tool_choice")
    wanted = None
    if isinstance(choice, dict):
        if choice.get("type") == "none":
            return None
        wanted = choice.get("name")
    named = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]
    if not named:
        return None
    chosen = next((t for t in named if t["name"] == wanted), named[0])
    return _ToolCall(chosen["name"], chosen.get("input_schema"))


@lru_cache(maxsize=4096)
def _embedding(key: str, dims: int) -> array:
    """Unit-length float32 vector derived only from the text."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    vector = array("f", (v / norm for v in values))
    if sys.byteorder == "big":
        vector.byteswap()  # OpenAI's base64 is little-endian; keep bytes in wire order
    return vector


def _embedding_values(vector: array) -> list[float]:
    if sys.byteorder == "big":
        return list(struct.unpack(f"<{len(vector)}f", vector.tobytes()))
    return vector.tolist()


# --------------------------------------------------------------------------------------------
# Error envelopes
# --------------------------------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}
_ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _phrase(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _rand_id(prefix: str) -> str:
    # Ids only need to be unique-looking, not unguessable; getrandbits is ~20x cheaper than
    # secrets on the hot path.
    return f"{prefix}{random.getrandbits(96):024x}"


def _request_id() -> str:
    return _rand_id("req_")


# The rate-limit headers each provider sends with every answer (fixed, generous
# limits: the mock never rate-limits on its own).
MOCK_REQUEST_LIMIT = 10_000
MOCK_TOKEN_LIMIT = 2_000_000


def openai_limit_headers() -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers (resets as durations)."""
    return {
        "x-ratelimit-limit-requests": str(MOCK_REQUEST_LIMIT),
        "x-ratelimit-limit-tokens": str(MOCK_TOKEN_LIMIT),
        "x-ratelimit-remaining-requests": str(MOCK_REQUEST_LIMIT - 1),
        "x-ratelimit-remaining-tokens": str(MOCK_TOKEN_LIMIT - 1_000),
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-reset-tokens": "30ms",
    }


def anthropic_limit_headers() -> dict[str, str]:
    """Anthropic's ``anthropic-ratelimit-*`` headers (resets as RFC 3339 times)."""
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    headers = {}
    for kind, limit in (
        ("requests", MOCK_REQUEST_LIMIT),
        ("tokens", MOCK_TOKEN_LIMIT),
        ("input-tokens", MOCK_TOKEN_LIMIT),
        ("output-tokens", MOCK_TOKEN_LIMIT // 5),
    ):
        headers[f"anthropic-ratelimit-{kind}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{kind}-remaining"] = str(limit - 1)
        headers[f"anthropic-ratelimit-{kind}-reset"] = reset
    return headers


def openai_error(
    status: int,
    message: str | None = None,
    *,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error response in OpenAI's ``{"error": {...}}`` envelope."""
    default_type, default_code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    payload = {
        "error": {
            "message": message or f"Mock provider error: {status} {_phrase(status)}.",
            "type": type_ or default_type,
            "param": param,
            "code": code if code is not None else default_code,
        }
    }
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        reason=_phrase(status),
        headers={**JSON_HEADERS, "x-request-id": _request_id(), **(headers or {})},
    )


def anthropic_error(
    status: int,
    message: str | None = None,
    *,
    type_: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error response in Anthropic's ``{"type": "error", "error": {...}}`` envelope."""
    default_type = _ANTHROPIC_ERRORS.get(
        status, "api_error" if status >= 500 else "invalid_request_error"
    )
    payload = {
        "type": "error",
        "error": {
            "type": type_ or default_type,
            "message": message or f"Mock provider error: {status} {_phrase(status)}.",
        },
    }
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        reason=_phrase(status),
        headers={**JSON_HEADERS, "request-id": _request_id(), **(headers or {})},
    )


# Renders an error in one wire format: (status, message, extra headers) -> response.
ErrorRenderer = Callable[[int, str | None, Mapping[str, str]], web.Response]
# A format's credential check: a refusal, or None to go on.
Refusal = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


@dataclass(frozen=True)
class Gate:
    """How a provider surface enters a handler it shares with OpenAI's: its
    error envelope, its credential check, and the model its path names (an
    Azure deployment) for bodies that carry none."""

    render: ErrorRenderer | None = None
    refuse: Refusal | None = None
    model: str | None = None


OPENAI_GATE = Gate()


def openai_renderer(status: int, message: str | None, headers: Mapping[str, str]) -> web.Response:
    if status == 429:  # a rate limit says which one ran out
        headers = {**openai_limit_headers(), "x-ratelimit-remaining-requests": "0", **headers}
    return openai_error(status, message, headers=headers)


def anthropic_renderer(
    status: int, message: str | None, headers: Mapping[str, str]
) -> web.Response:
    if status == 429:
        limits = anthropic_limit_headers()
        headers = {**limits, "anthropic-ratelimit-requests-remaining": "0", **headers}
    return anthropic_error(status, message, headers=headers)


def _error(
    anthropic: bool, status: int, message: str, param: str | None = None, code: str | None = None
) -> web.Response:
    if anthropic:
        return anthropic_error(status, message)
    return openai_error(status, message, param=param, code=code)


def _retry_after_value(seconds: float) -> str:
    return str(int(seconds)) if seconds == int(seconds) else f"{seconds:g}"


# --------------------------------------------------------------------------------------------
# HTTP handlers
# --------------------------------------------------------------------------------------------


class _Call:
    """What the handlers know about one provider request after the common prologue."""

    __slots__ = ("behaviour", "body", "render_error")

    def __init__(self, body: Any, behaviour: Behaviour, render_error: ErrorRenderer) -> None:
        self.body = body
        self.behaviour = behaviour
        self.render_error = render_error


def _sleep(ms: float) -> Awaitable[None]:
    return asyncio.sleep(ms / 1000.0)


def _int_param(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(key)
    return value


def _stop_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for s in value if isinstance(s, str)]
    return []


class _Routes:
    """aiohttp handlers bound to one :class:`MockProvider`."""

    def __init__(self, provider: MockProvider) -> None:
        self.p = provider
        self.closing = False
        self.known_paths: dict[str, set[str]] = {}

    # -- common prologue ----------------------------------------------------------------

    async def _begin(
        self, request: web.Request, anthropic: bool = False, render: ErrorRenderer | None = None
    ) -> _Call | web.Response:
        """Read and record the request, pick its behaviour; errors rendered by ``render``
        (default: Anthropic's envelope when ``anthropic``, else OpenAI's)."""
        if render is None:
            render = anthropic_renderer if anthropic else openai_renderer
        raw = await request.read() if request.body_exists else b""
        body: Any = None
        problem: str | None = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                problem = (
                    "We could not parse the JSON body of your request. "
                    "(The mock expects a JSON object.)"
                )
        if request.method == "POST" and problem is None and not isinstance(body, dict):
            problem = "The request body must be a JSON object."
        record = self.p.note(request, body, raw)
        if problem is not None:
            return render(400, problem, {})

        behaviour = self.p.defaults
        if self.p.rules:
            model = body.get("model") if isinstance(body, dict) else None
            rule = self.p.match_rule(request.path, model, _api_keys(request.headers))
            if rule is not None:
                if record is not None:
                    record["rule"] = rule.id
                behaviour = behaviour.merged(rule.overrides)
        header = request.headers.get("x-mock-behaviour")
        if header:
            try:
                overrides = orjson.loads(header)
                if not isinstance(overrides, dict):
                    raise ValueError("x-mock-behaviour must be a JSON object")
                behaviour = behaviour.merged(overrides)
            except (orjson.JSONDecodeError, ValueError) as exc:
                return render(400, f"Invalid x-mock-behaviour header: {exc}", {})
        return _Call(body, behaviour, render)

    async def accept(
        self,
        request: web.Request,
        *,
        anthropic: bool = False,
        render: ErrorRenderer | None = None,
        refuse: Refusal | None = None,
    ) -> _Call | web.StreamResponse:
        """Every handler's prologue: the request read and recorded (:meth:`_begin`),
        refused by ``refuse`` (a format's credential check) when it says so,
        then the behaviour's injected delays and failures (:meth:`_inject`)."""
        call = await self._begin(request, anthropic, render)
        if isinstance(call, web.StreamResponse):
            return call
        if refuse is not None:
            refused = await refuse(request)
            if refused is not None:
                return refused
        early = await self._inject(request, call)
        return early if early is not None else call

    async def _inject(self, request: web.Request, call: _Call) -> web.StreamResponse | None:
        """Apply slow first byte, connection resets and injected error statuses."""
        b = call.behaviour
        delay = b.slow_first_byte_ms
        if b.reset or b.status is not None:
            delay += b.latency_ms
        if delay:
            await _sleep(delay)
        if b.reset:
            return self._abort(request)
        if b.status is not None:
            headers = {}
            if b.retry_after is not None:
                headers["Retry-After"] = _retry_after_value(b.retry_after)
            return call.render_error(b.status, b.error_message, headers)
        return None

    @staticmethod
    def _abort(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns close() into an RST, so clients see a genuine reset.
                with contextlib.suppress(OSError, AttributeError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # aiohttp's attempt to send this fails silently on the closed transport.
        return web.Response(status=500)

    def _json(self, call: _Call, payload: Any, extra: Mapping[str, str]) -> web.Response:
        data = orjson.dumps(payload)
        b = call.behaviour
        if b.malformed == "json":
            data = data[: max(1, len(data) // 2)]
        headers = {**JSON_HEADERS, **extra}
        if b.retry_after is not None:
            headers["Retry-After"] = _retry_after_value(b.retry_after)
        return web.Response(body=data, headers=headers)

    @staticmethod
    def _sse_response(call: _Call, extra: Mapping[str, str]) -> web.StreamResponse:
        headers = {**SSE_HEADERS, **extra}
        if call.behaviour.retry_after is not None:
            headers["Retry-After"] = _retry_after_value(call.behaviour.retry_after)
        return web.StreamResponse(headers=headers)

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        behaviour: Behaviour,
        *,
        wait_ttft: bool = True,
    ) -> AsyncIterator[web.StreamResponse]:
        """A streamed answer from its headers to its end: counted while open,
        its first event after the behaviour's TTFT (unless the handler places
        that wait itself), and a client that goes away counted as a disconnect
        rather than raised."""
        self.p.streams_open += 1
        try:
            await resp.prepare(request)
            if wait_ttft and behaviour.ttft_ms:
                await _sleep(behaviour.ttft_ms)
            yield resp
        except ConnectionError:
            self.p.disconnects += 1
        finally:
            self.p.streams_open -= 1

    async def _hang(self, request: web.Request) -> None:
        """Keep a stream open without sending anything until the client or server gives up."""
        while True:
            transport = request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away during stall")
            if self.closing:
                # A clean end would pass for a complete (if truncated) stream; cut it instead.
                transport.abort()
                return
            await asyncio.sleep(STALL_POLL_S)

    @staticmethod
    def _pad(text: str, body_bytes: int) -> str:
        # Padding is glued to the last word so the word-based token count stays right.
        missing = body_bytes - len(text.encode())
        return text + "x" * missing if missing > 0 else text

    # -- OpenAI ---------------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        call = await self.accept(request, anthropic=False)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", param="model")
        if not isinstance(messages, list) or not messages:
            return openai_error(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        try:
            n = _int_param(body, "n") or 1
            cap = _int_param(body, "max_completion_tokens")
            if cap is None:
                cap = _int_param(body, "max_tokens")
        except ValueError as exc:
            return openai_error(
                400,
                f"Invalid '{exc}': expected an integer >= 1.",
                param=str(exc),
                code="invalid_value",
            )
        if n > 128:
            return openai_error(
                400, "Invalid 'n': must be <= 128.", param="n", code="invalid_value"
            )

        structured = _openai_format(body)
        if isinstance(structured, str):
            return openai_error(400, structured, param="response_format", code="invalid_value")

        b = call.behaviour
        prompt_tokens = count_input_tokens(messages)
        tool = _openai_tool(body)
        if tool is not None:
            tool = tool.given(b.tool_arguments)
            units: tuple[str, ...] = tool.fragments
            finish = "tool_calls"
        elif structured[0]:
            units, finish = structured_units(structured[1]), "stop"
        else:
            units, why, _ = _answer_tokens(
                b.answer or b.output_tokens, cap, _stop_list(body.get("stop"))
            )
            finish = "length" if why == "length" else "stop"
        completion_tokens = n * len(units)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }
        extra = {"x-request-id": _request_id(), **openai_limit_headers()}
        completion_id = _rand_id("chatcmpl-")
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream_chat(
                request,
                call,
                completion_id,
                model,
                n,
                tool,
                units,
                finish,
                usage if include_usage else None,
                extra,
            )

        if b.latency_ms:
            await _sleep(b.latency_ms)
        if tool is not None:
            choices = [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": _rand_id("call_"),
                                "type": "function",
                                "function": {"name": tool.name, "arguments": tool.arguments_json},
                            }
                        ],
                        "refusal": None,
                    },
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ]
        else:
            text = self._pad(_joined(units), b.body_bytes)
            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
                for i in range(n)
            ]
        payload = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
            "usage": usage,
        }
        return self._json(call, payload, extra)

    async def _stream_chat(
        self,
        request: web.Request,
        call: _Call,
        completion_id: str,
        model: str,
        n: int,
        tool: _ToolCall | None,
        units: tuple[str, ...],
        finish: str,
        usage: dict[str, Any] | None,
        extra: Mapping[str, str],
    ) -> web.StreamResponse:
        b = call.behaviour
        # Every chunk shares the same envelope; only "choices" varies.
        head = (
            b"data: "
            + orjson.dumps(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": "fp_mock",
                }
            )[:-1]
            + b',"choices":'
        )
        tail = b',"usage":null}\n\n' if usage is not None else b"}\n\n"

        def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return (
                head
                + orjson.dumps(
                    [
                        {
                            "index": index,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": finish_reason,
                        }
                    ]
                )
                + tail
            )

        if tool is not None:
            first = [
                {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": _rand_id("call_"),
                            "type": "function",
                            "function": {"name": tool.name, "arguments": ""},
                        }
                    ],
                }
                for _ in range(n)
            ]
        else:
            first = [{"role": "assistant", "content": ""} for _ in range(n)]

        resp = self._sse_response(call, extra)
        async with self.open_stream(request, resp, b):
            for i in range(n):
                await resp.write(chunk(i, first[i]))
            stall = b.stall_after_tokens
            for position, unit in enumerate(units):
                if stall is not None and position >= stall:
                    break
                if position and b.inter_token_ms:
                    await _sleep(b.inter_token_ms)
                if tool is not None:
                    delta: dict[str, Any] = {
                        "tool_calls": [{"index": 0, "function": {"arguments": unit}}]
                    }
                else:
                    delta = {"content": unit}
                for i in range(n):
                    await resp.write(chunk(i, delta))
                if position == 0 and b.malformed == "sse":
                    await resp.write(b'data: {"id": this is not json\n\n')
            if stall is not None:
                await self._hang(request)
                return resp
            if not units and b.malformed == "sse":
                await resp.write(b'data: {"id": this is not json\n\n')
            for i in range(n):
                await resp.write(chunk(i, {}, finish))
            if usage is not None:
                await resp.write(head + b'[],"usage":' + orjson.dumps(usage) + b"}\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        return resp

    async def embeddings(
        self, request: web.Request, gate: Gate = OPENAI_GATE
    ) -> web.StreamResponse:
        call = await self.accept(request, render=gate.render, refuse=gate.refuse)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        model = body.get("model") or gate.model
        if not isinstance(model, str) or not model:
            return openai_error(400, "you must provide a model parameter", param="model")
        items = _embedding_inputs(body.get("input"))
        if items is None:
            return openai_error(
                400,
                "'input' must be a non-empty string, array of strings, "
                "array of tokens or array of token arrays.",
                param="input",
                code="invalid_value",
            )
        dims = body.get("dimensions", DEFAULT_EMBEDDING_DIMS)
        if (
            isinstance(dims, bool)
            or not isinstance(dims, int)
            or not 1 <= dims <= MAX_EMBEDDING_DIMS
        ):
            return openai_error(
                400,
                "Invalid 'dimensions': expected a positive integer.",
                param="dimensions",
                code="invalid_value",
            )
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return openai_error(
                400,
                "Invalid 'encoding_format': expected 'float' or 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        data = []
        tokens = 0
        for index, item in enumerate(items):
            if isinstance(item, str):
                key, count = item, len(item.split())
            else:
                key, count = " ".join(map(str, item)), len(item)
            tokens += max(count, 1)
            vector = _embedding(key, dims)
            value: Any = (
                base64.b64encode(vector.tobytes()).decode()
                if encoding == "base64"
                else _embedding_values(vector)
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        payload = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return self._json(call, payload, {"x-request-id": _request_id()})

    async def models(self, request: web.Request) -> web.StreamResponse:
        anthropic = request.path.startswith("/anthropic/")
        call = await self.accept(request, anthropic=anthropic)
        if isinstance(call, web.StreamResponse):
            return call
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        wanted = request.match_info.get("model")
        if wanted is not None and wanted not in MODELS:
            return _error(
                anthropic,
                404,
                f"The model '{wanted}' does not exist",
                param="model",
                code="model_not_found",
            )
        if anthropic:
            entries = [
                {
                    "type": "model",
                    "id": m,
                    "display_name": m.replace("-", " ").title(),
                    "created_at": "2023-11-14T22:13:20Z",
                }
                for m in MODELS
            ]
            if wanted is not None:
                payload: Any = next(e for e in entries if e["id"] == wanted)
            else:
                payload = {
                    "data": entries,
                    "has_more": False,
                    "first_id": MODELS[0],
                    "last_id": MODELS[-1],
                }
            return self._json(call, payload, {"request-id": _request_id()})
        entries = [
            {"id": m, "object": "model", "created": MODEL_CREATED, "owned_by": "mock"}
            for m in MODELS
        ]
        if wanted is not None:
            payload = next(e for e in entries if e["id"] == wanted)
        else:
            payload = {"object": "list", "data": entries}
        return self._json(call, payload, {"x-request-id": _request_id()})

    # -- Anthropic ------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        call = await self.accept(request, anthropic=True)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            return anthropic_error(400, "model: Field required")
        if not isinstance(messages, list):
            return anthropic_error(400, "messages: Field required")
        if "max_tokens" not in body:
            return anthropic_error(400, "max_tokens: Field required")
        try:
            cap = _int_param(body, "max_tokens")
        except ValueError:
            return anthropic_error(400, "max_tokens: Input should be greater than or equal to 1")

        structured = _anthropic_format(body)
        if isinstance(structured, str):
            return anthropic_error(400, structured)

        b = call.behaviour
        input_tokens = count_input_tokens(messages, body.get("system"))
        tool = _anthropic_tool(body)
        stop_sequence: str | None = None
        if tool is not None:
            tool = tool.given(b.tool_arguments)
            units: tuple[str, ...] = tool.fragments
            stop_reason = "tool_use"
        elif structured[0]:
            units, stop_reason = structured_units(structured[1]), "end_turn"
        else:
            units, why, stop_sequence = _answer_tokens(
                b.answer or b.output_tokens, cap, _stop_list(body.get("stop_sequences"))
            )
            stop_reason = {"length": "max_tokens", "stop": "stop_sequence"}.get(
                why or "", "end_turn"
            )
        message_id = _rand_id("msg_")
        extra = {"request-id": _request_id(), **anthropic_limit_headers()}
        if body.get("stream") is True:
            return await self._stream_messages(
                request,
                call,
                message_id,
                model,
                tool,
                units,
                stop_reason,
                stop_sequence,
                input_tokens,
                extra,
            )
        if b.latency_ms:
            await _sleep(b.latency_ms)
        if tool is not None:
            content: list[dict[str, Any]] = [
                {
                    "type": "tool_use",
                    "id": _rand_id("toolu_"),
                    "name": tool.name,
                    "input": tool.arguments,
                }
            ]
        else:
            content = [{"type": "text", "text": self._pad(_joined(units), b.body_bytes)}]
        payload = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": _anthropic_usage(input_tokens, len(units)),
        }
        return self._json(call, payload, extra)

    async def _stream_messages(
        self,
        request: web.Request,
        call: _Call,
        message_id: str,
        model: str,
        tool: _ToolCall | None,
        units: tuple[str, ...],
        stop_reason: str,
        stop_sequence: str | None,
        input_tokens: int,
        extra: Mapping[str, str],
    ) -> web.StreamResponse:
        b = call.behaviour

        def event(name: str, payload: Any) -> bytes:
            return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

        if tool is not None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": _rand_id("toolu_"),
                "name": tool.name,
                "input": {},
            }
            delta_head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                b'"index":0,"delta":{"type":"input_json_delta","partial_json":'
            )
        else:
            block = {"type": "text", "text": ""}
            delta_head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta",'
                b'"index":0,"delta":{"type":"text_delta","text":'
            )

        resp = self._sse_response(call, extra)
        async with self.open_stream(request, resp, b):
            await resp.write(
                event(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": message_id,
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": _anthropic_usage(input_tokens, 1),
                        },
                    },
                )
            )
            await resp.write(
                event(
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": block},
                )
            )
            await resp.write(b'event: ping\ndata: {"type":"ping"}\n\n')
            stall = b.stall_after_tokens
            for position, unit in enumerate(units):
                if stall is not None and position >= stall:
                    break
                if position and b.inter_token_ms:
                    await _sleep(b.inter_token_ms)
                await resp.write(delta_head + orjson.dumps(unit) + b"}}\n\n")
                if position == 0 and b.malformed == "sse":
                    await resp.write(b"event: content_block_delta\ndata: {not valid json\n\n")
            if stall is not None:
                await self._hang(request)
                return resp
            if not units and b.malformed == "sse":
                await resp.write(b"event: content_block_delta\ndata: {not valid json\n\n")
            await resp.write(
                b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
            )
            await resp.write(
                event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                        "usage": {"output_tokens": len(units)},
                    },
                )
            )
            await resp.write(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
            await resp.write_eof()
        return resp

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        call = await self.accept(request, anthropic=True)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        if not isinstance(body.get("messages"), list):
            return anthropic_error(400, "messages: Field required")
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        tokens = count_input_tokens(body["messages"], body.get("system"))
        return self._json(call, {"input_tokens": tokens}, {"request-id": _request_id()})

    # -- fallbacks ------------------------------------------------------------------------

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        anthropic = path.startswith("/anthropic/") or path.startswith("/v1/messages")
        if not path.startswith("/_mock/"):
            raw = await request.read() if request.body_exists else b""
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = None
            self.p.note(request, body, raw)
        allowed = self.known_paths.get(path)
        if allowed:
            message = f"Method {request.method} not allowed for {path}."
            headers = {"Allow": ", ".join(sorted(allowed))}
            if anthropic:
                return anthropic_error(405, message, headers=headers)
            return openai_error(405, message, headers=headers)
        message = f"Invalid URL ({request.method} {path})"
        if anthropic:
            return anthropic_error(404, message)
        return openai_error(404, message, code=None)

    # -- control API ----------------------------------------------------------------------

    async def ctl_stats(self, request: web.Request) -> web.Response:
        return _plain_json(self.p.stats())

    async def ctl_health(self, request: web.Request) -> web.Response:
        return _plain_json({"ok": True})

    async def ctl_reset(self, request: web.Request) -> web.Response:
        self.p.reset()
        return _plain_json({"ok": True})

    async def ctl_requests(self, request: web.Request) -> web.Response:
        limit_text = request.query.get("limit")
        limit: int | None = None
        if limit_text is not None:
            try:
                limit = int(limit_text)
            except ValueError:
                return openai_error(400, "limit must be an integer", param="limit")
        return _plain_json({"requests": self.p.recorded(limit)})

    async def ctl_rules_get(self, request: web.Request) -> web.Response:
        return _plain_json({"rules": [r.to_json() for r in self.p.rules]})

    async def ctl_rules_post(self, request: web.Request) -> web.Response:
        try:
            obj = orjson.loads(await request.read())
            rule = self.p.add_rule(obj)
        except (orjson.JSONDecodeError, ValueError) as exc:
            return openai_error(400, f"Invalid rule: {exc}")
        return _plain_json(rule.to_json())

    async def ctl_rules_delete(self, request: web.Request) -> web.Response:
        self.p.clear_rules()
        return _plain_json({"ok": True})

    async def ctl_rule_delete(self, request: web.Request) -> web.Response:
        if not self.p.delete_rule(request.match_info["rule_id"]):
            return openai_error(404, "No such rule")
        return _plain_json({"ok": True})


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _embedding_inputs(value: Any) -> list[str | list[int]] | None:
    """Normalise OpenAI's four ``input`` shapes; ``None`` when invalid."""
    if isinstance(value, str):
        return [value] if value else None
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [value]
    items: list[str | list[int]] = []
    for item in value:
        if isinstance(item, str) and item:
            items.append(item)
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            items.append(item)
        else:
            return None
    return items


def _plain_json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=JSON_HEADERS)


def make_app(provider: MockProvider) -> web.Application:
    """Build the aiohttp application serving ``provider``."""
    routes = _Routes(provider)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app["mock_provider"] = provider

    endpoints: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("POST", "/v1/chat/completions", routes.chat_completions),
        ("POST", "/v1/embeddings", routes.embeddings),
        ("GET", "/v1/models", routes.models),
        ("GET", "/v1/models/{model}", routes.models),
        ("POST", "/v1/messages", routes.messages),
        ("POST", "/v1/messages/count_tokens", routes.count_tokens),
    ]
    for prefix in PREFIXES:
        for method, path, handler in endpoints:
            app.router.add_route(method, prefix + path, handler)
            routes.known_paths.setdefault(prefix + path, set()).add(method)
    # Further wire formats (Gemini, Bedrock, ...) serve their own absolute paths.
    from proxy.mock_provider.formats import WIRE_FORMATS

    for endpoints_of in WIRE_FORMATS:
        for method, path, handler in endpoints_of(routes):
            app.router.add_route(method, path, handler)
            routes.known_paths.setdefault(path, set()).add(method)
    app.router.add_get("/_mock/stats", routes.ctl_stats)
    app.router.add_get("/_mock/health", routes.ctl_health)
    app.router.add_post("/_mock/reset", routes.ctl_reset)
    app.router.add_get("/_mock/requests", routes.ctl_requests)
    app.router.add_get("/_mock/rules", routes.ctl_rules_get)
    app.router.add_post("/_mock/rules", routes.ctl_rules_post)
    app.router.add_delete("/_mock/rules", routes.ctl_rules_delete)
    app.router.add_delete("/_mock/rules/{rule_id}", routes.ctl_rule_delete)
    app.router.add_route("*", "/{tail:.*}", routes.not_found)

    async def on_startup(_: web.Application) -> None:
        routes.closing = False

    async def on_shutdown(_: web.Application) -> None:
        # Lets stalled streams end so shutdown does not wait for them.
        routes.closing = True

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


async def start_in_loop(
    host: str,
    port: int,
    provider: MockProvider,
    *,
    access_log: bool = False,
    shutdown_timeout: float = 2.0,
) -> web.AppRunner:
    """Serve ``provider`` on the running loop; returns the runner (``await runner.cleanup()``).

    With ``port=0`` the bound port is ``runner.addresses[0][1]``.
    """
    runner = web.AppRunner(
        make_app(provider),
        access_log=web.access_logger if access_log else None,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    await site.start()
    return runner


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve_forever(host: str, port: int, provider: MockProvider, access_log: bool) -> None:
    runner = await start_in_loop(host, port, provider, access_log=access_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signame in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, signame)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"mock provider listening on http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(host: str, port: int, provider: MockProvider, *, access_log: bool = False) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (uses uvloop when available)."""
    if access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve_forever(host, port, provider, access_log))


class MockServerThread:
    """Runs a mock provider on a private event loop in a daemon thread (for sync tests).

    ``with MockServerThread() as mock: requests.get(mock.url + "/v1/models")``.
    """

    def __init__(
        self, provider: MockProvider | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.provider = provider or MockProvider()
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (append ``/openai/v1`` etc.)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MockServerThread:
        """Start serving; returns once the socket is bound."""
        self._thread = threading.Thread(target=self._run, name="mock-provider", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("mock provider failed to start") from self._error
        return self

    def _run(self) -> None:
        factory = _loop_factory()
        loop = factory() if factory else asyncio.new_event_loop()
        self._loop = loop
        try:
            runner = loop.run_until_complete(start_in_loop(self.host, self.port, self.provider))
            self.port = runner.addresses[0][1]
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> MockServerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--host``, ``--port`` and the behaviour flags (shared with the manage.py command)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before a non-streamed answer"
    )
    parser.add_argument(
        "--ttft-ms", type=float, default=0.0, help="delay before the first streamed event"
    )
    parser.add_argument(
        "--inter-token-ms", type=float, default=0.0, help="delay between streamed tokens"
    )
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument(
        "--status", type=int, default=None, help="answer every request with this HTTP error status"
    )
    parser.add_argument(
        "--retry-after", type=float, default=None, help="seconds sent as a Retry-After header"
    )
    parser.add_argument(
        "--reset", action="store_true", help="abort every connection without answering"
    )
    parser.add_argument(
        "--stall-after-tokens", type=int, default=None, help="streams hang after this many tokens"
    )
    parser.add_argument("--malformed", choices=("json", "sse"), default=None)
    parser.add_argument(
        "--slow-first-byte-ms", type=float, default=0.0, help="delay before the response headers"
    )
    parser.add_argument(
        "--body-bytes",
        type=int,
        default=0,
        help="pad non-stream text answers to at least this many bytes",
    )
    parser.add_argument(
        "--record-limit",
        type=int,
        default=1000,
        help="recorded-request ring buffer size (0 disables recording)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")


def provider_from_options(options: Mapping[str, Any]) -> MockProvider:
    """Build a provider from parsed CLI options (argparse or Django ``**options``)."""
    behaviour = {name: options[name] for name in BEHAVIOUR_FIELDS if name in options}
    # Going through merged() validates the values exactly like rules and headers.
    return MockProvider(record_limit=int(options.get("record_limit", 1000)), **behaviour)


def run_from_options(options: Mapping[str, Any]) -> None:
    """Build the provider from parsed options and serve it in the foreground.

    Raises ``ValueError`` for invalid behaviour values.
    """
    provider = provider_from_options(options)
    serve(
        str(options["host"]),
        int(options["port"]),
        provider,
        access_log=bool(options.get("access_log")),
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m proxy.mock_provider --port 9100 ...``."""
    parser = argparse.ArgumentParser(prog="mock_provider", description=__doc__.splitlines()[0])
    add_cli_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        provider = provider_from_options(options)
    except ValueError as exc:
        parser.error(str(exc))
    serve(options["host"], options["port"], provider, access_log=options["access_log"])


if __name__ == "__main__":
    main()
