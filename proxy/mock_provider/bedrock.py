"""Amazon Bedrock's Converse API, as the mock serves them.

The mock runtime endpoint is ``{mock}/bedrock`` (what a real
``https://bedrock-runtime.<region>.amazonaws.com`` is), serving:

* ``POST /bedrock/model/{modelId}/converse``         one answer (JSON)
* ``POST /bedrock/model/{modelId}/converse-stream``  an AWS event stream
  (``application/vnd.amazon.eventstream``)
* ``POST /bedrock/model/{modelId}/invoke``           InvokeModel, for Titan Text
  Embeddings V2 bodies (``inputText``, ``dimensions`` 256/512/1024, ``normalize``)

Every request must be authenticated as Bedrock does: either signed with AWS
Signature Version 4 (service ``bedrock``, any well-formed region) by one of
the access keys in :data:`CREDENTIALS`, the mock recomputing the signature
over the method, path, query, signed headers and body, and checking the date
(at most 15 minutes off) and the session token of temporary keys; or carrying
one of :data:`API_KEYS` as ``Authorization: Bearer``. More credentials come
from ``MOCK_BEDROCK_CREDENTIALS`` (comma-separated
``ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]`` entries or bearer keys). Refusals are
403 with Bedrock's ``{"message"}`` body and ``x-amzn-ErrorType`` header
(``MissingAuthenticationTokenException``, ``UnrecognizedClientException``,
``InvalidSignatureException``, ``IncompleteSignatureException``); invalid
requests are 400 ``ValidationException``; injected statuses map to
``ThrottlingException`` (429), ``AccessDeniedException`` (403),
``ModelTimeoutException`` (408), ``InternalServerException`` (500),
``ServiceUnavailableException`` (503)...

Markers in the last user message drive the rarer outcomes:
``[mock:content_filtered]`` cuts the answer after its first token with stop
reason ``content_filtered``; ``[mock:stream_exception=NAME]`` makes a stream
send an exception message ``NAME`` (e.g. ``modelStreamErrorException``,
``throttlingException``) after its first token and end there.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import struct
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from proxy.mock_provider.server import (
    _answer_tokens,
    _Call,
    _embedding,
    _embedding_values,
    _joined,
    _phrase,
    _rand_id,
    _sleep,
    _ToolCall,
    count_input_tokens,
)
from proxy.providers import sigv4

PREFIX = "/bedrock"
SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
# AWS refuses signatures dated further than this from its clock.
MAX_CLOCK_SKEW_S = 15 * 60
CONTENT_FILTER_MARKER = "[mock:content_filtered]"
_STREAM_EXCEPTION = re.compile(r"\[mock:stream_exception=(\w+)\]")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")


@dataclass(frozen=True, slots=True)
class Credential:
    """An access key the mock accepts, with its secret and (temporary keys) session token."""

    secret_access_key: str
    session_token: str | None = None


# The mock's built-in test identities (not secrets: they only open the mock).
ACCESS_KEY_ID = "AKIAMOCKBEDROCK00001"
SECRET_ACCESS_KEY = "mock/Bedrock+Secret/Key/0000000000000001"
TEMPORARY_ACCESS_KEY_ID = "ASIAMOCKBEDROCK00002"
TEMPORARY_SECRET_ACCESS_KEY = "mock/Bedrock+Temporary/Secret/00000002"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEMockSessionToken//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="
API_KEY = "ABSKbW9jay1iZWRyb2NrLWFwaS1rZXktMDAwMDE="

CREDENTIALS: dict[str, Credential] = {
    ACCESS_KEY_ID: Credential(SECRET_ACCESS_KEY),
    TEMPORARY_ACCESS_KEY_ID: Credential(TEMPORARY_SECRET_ACCESS_KEY, SESSION_TOKEN),
}
API_KEYS: set[str] = {API_KEY}


def _load_environment() -> None:
    for entry in os.environ.get("MOCK_BEDROCK_CREDENTIALS", "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        parsed = sigv4.parse_credentials(entry)
        if parsed is None or entry.startswith(("ABSK", "bedrock-api-key-")):
            API_KEYS.add(entry)
        else:
            CREDENTIALS[parsed.access_key_id] = Credential(
                parsed.secret_access_key, parsed.session_token
            )


_load_environment()

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_DEFAULT_MESSAGES = {
    403: "You don't have access to the model with the specified model ID.",
    429: "Too many requests, please wait before trying again.",
    503: "Bedrock is unable to process your request.",
}
INVALID_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


def bedrock_error(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error as Bedrock sends it: ``{"message"}`` and the type in ``x-amzn-ErrorType``."""
    kind = error_type or _ERROR_TYPES.get(
        status, "InternalServerException" if status >= 500 else "ValidationException"
    )
    text = message or _DEFAULT_MESSAGES.get(status) or f"Mock provider error: {status}."
    return web.Response(
        body=orjson.dumps({"message": text}),
        status=status,
        reason=_phrase(status),
        headers={
            "Content-Type": "application/json",
            "x-amzn-RequestId": str(uuid.uuid4()),
            "x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            **(headers or {}),
        },
    )


def _render(status: int, message: str | None, headers: Mapping[str, str]) -> web.Response:
    return bedrock_error(status, message, headers=headers)


def _invalid(message: str) -> web.Response:
    return bedrock_error(400, message)


# --------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------


def _refuse(error_type: str, message: str) -> web.Response:
    return bedrock_error(403, message, error_type=error_type)


def authenticate(request: web.Request, body: bytes) -> web.Response | None:
    """None when the request is signed by a known key (or bears a known API key),
    else Bedrock's 403."""
    header = request.headers.get("Authorization", "")
    if not header:
        return _refuse("MissingAuthenticationTokenException", "Missing Authentication Token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer":
        if token.strip() in API_KEYS:
            return None
        return _refuse(
            "AccessDeniedException",
            "Authentication failed: Please make sure your API Key is valid.",
        )
    auth = sigv4.parse_authorization(header)
    if auth is None:
        return _refuse(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' "
            "parameters.",
        )
    credential = CREDENTIALS.get(auth.access_key_id)
    if credential is None:
        return _refuse("UnrecognizedClientException", INVALID_TOKEN)
    if request.headers.get("x-amz-security-token") != credential.session_token:
        return _refuse("UnrecognizedClientException", INVALID_TOKEN)
    if auth.service != SERVICE or not _REGION.match(auth.region):
        return _refuse(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'.",
        )
    if "host" not in auth.signed_headers or "x-amz-date" not in auth.signed_headers:
        return _refuse(
            "InvalidSignatureException",
            "'Host' and 'X-Amz-Date' must be among the signed headers.",
        )
    if credential.session_token and "x-amz-security-token" not in auth.signed_headers:
        return _refuse("InvalidSignatureException", INVALID_SIGNATURE)
    timestamp = request.headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return _refuse("IncompleteSignatureException", "X-Amz-Date is missing or malformed.")
    now = datetime.now(UTC)
    if abs((now - signed_at).total_seconds()) > MAX_CLOCK_SKEW_S or timestamp[:8] != auth.date:
        return _refuse(
            "InvalidSignatureException",
            f"Signature expired: {timestamp} is now earlier than {sigv4.amz_date(now)} - 15 min.",
        )
    raw_path, _, raw_query = request.raw_path.partition("?")
    canonical = sigv4.canonical_request(
        request.method,
        raw_path,
        raw_query,
        {name: request.headers.get(name, "") for name in auth.signed_headers},
        auth.signed_headers,
        # The body actually received, whatever x-amz-content-sha256 claims.
        sigv4.sha256_hex(body),
    )
    expected = sigv4.signature(
        credential.secret_access_key,
        auth.scope,
        sigv4.string_to_sign(timestamp, auth.scope, canonical),
    )
    if not hmac.compare_digest(expected, auth.signature):
        return _refuse("InvalidSignatureException", INVALID_SIGNATURE)
    return None


# --------------------------------------------------------------------------------------------
# Request validation
# --------------------------------------------------------------------------------------------

TOP_LEVEL = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    }
)
BLOCK_KINDS = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "audio",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
        "citationsContent",
        "searchResult",
    }
)
IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
TITAN_DIMENSIONS = frozenset({256, 512, 1024})
TITAN_DEFAULT_DIMENSIONS = 1024


def _number(value: Any, low: float, high: float) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and low <= value <= high


def _check_block(block: Any, where: str, role: str) -> str | None:
    if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in BLOCK_KINDS:
        return f"The value at {where} must be exactly one content block member."
    kind, value = next(iter(block.items()))
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            return f"The text field in the ContentBlock object at {where} is blank."
    elif kind == "image":
        source = value.get("source") if isinstance(value, dict) else None
        if not isinstance(value, dict) or value.get("format") not in IMAGE_FORMATS:
            return f"{where}.image.format must be one of png, jpeg, gif, webp."
        if not isinstance(source, dict) or not isinstance(source.get("bytes"), str):
            return f"{where}.image.source.bytes is required."
        try:
            base64.b64decode(source["bytes"], validate=True)
        except (binascii.Error, ValueError):
            return f"{where}.image.source.bytes is not valid base64."
    elif kind == "toolUse":
        if role != "assistant":
            return f"{where}: toolUse blocks are only allowed in assistant messages."
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) and value[k] for k in ("toolUseId", "name")
        ):
            return f"{where}.toolUse requires toolUseId and name."
        if not isinstance(value.get("input"), dict):
            return f"{where}.toolUse.input must be a JSON object."
    elif kind == "toolResult":
        if role != "user":
            return f"{where}: toolResult blocks are only allowed in user messages."
        if not isinstance(value, dict) or not isinstance(value.get("toolUseId"), str):
            return f"{where}.toolResult.toolUseId is required."
        content = value.get("content")
        if not isinstance(content, list):
            return f"{where}.toolResult.content is required."
        for item in content:
            if (
                not isinstance(item, dict)
                or len(item) != 1
                or next(iter(item))
                not in (
                    "text",
                    "json",
                    "image",
                    "document",
                )
            ):
                return f"{where}.toolResult.content has an invalid block."
        if value.get("status") not in (None, "success", "error"):
            return f"{where}.toolResult.status must be success or error."
    return None


def _check_tool_config(config: Any) -> str | None:
    if not isinstance(config, dict):
        return "toolConfig must be an object."
    tools = config.get("tools")
    if not isinstance(tools, list) or not tools:
        return "The toolConfig field must contain at least one tool."
    names = []
    for index, tool in enumerate(tools):
        spec = tool.get("toolSpec") if isinstance(tool, dict) else None
        if isinstance(tool, dict) and "cachePoint" in tool:
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            return f"toolConfig.tools.{index}.toolSpec.name is required."
        schema = spec.get("inputSchema")
        if not isinstance(schema, dict) or not isinstance(schema.get("json"), dict):
            return f"toolConfig.tools.{index}.toolSpec.inputSchema.json is required."
        names.append(spec["name"])
    choice = config.get("toolChoice")
    if choice is not None:
        if (
            not isinstance(choice, dict)
            or len(choice) != 1
            or next(iter(choice))
            not in (
                "auto",
                "any",
                "tool",
            )
        ):
            return "toolConfig.toolChoice must be exactly one of auto, any or tool."
        if "tool" in choice:
            wanted = choice["tool"].get("name") if isinstance(choice["tool"], dict) else None
            if wanted not in names:
                return f"toolConfig.toolChoice.tool.name '{wanted}' is not among the tools."
    return None


def validate(body: dict[str, Any]) -> str | None:
    """Bedrock's ValidationException message for an invalid Converse body, else None."""
    extra = sorted(set(body) - TOP_LEVEL)
    if extra:
        return f"Malformed input request: extraneous key [{extra[0]}] is not permitted."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The messages field is required and must contain at least one message."
    uses_tools = False
    previous = None
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("user", "assistant"):
            return f"messages.{index}.role must be user or assistant."
        if index == 0 and role != "user":
            return (
                "A conversation must start with a user message. "
                "Try again with a conversation that starts with a user message."
            )
        if role == previous:
            return (
                "A conversation must alternate between user and assistant roles. Make sure the "
                "conversation alternates between user and assistant roles and try again."
            )
        previous = role
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"messages.{index}.content must contain at least one content block."
        for position, block in enumerate(content):
            problem = _check_block(block, f"messages.{index}.content.{position}", role)
            if problem:
                return problem
            uses_tools = uses_tools or "toolUse" in block or "toolResult" in block
    system = body.get("system")
    if system is not None and (
        not isinstance(system, list) or not all(isinstance(b, dict) and len(b) == 1 for b in system)
    ):
        return "system must be a list of system content blocks."
    inference = body.get("inferenceConfig")
    if inference is not None:
        if not isinstance(inference, dict) or set(inference) - {
            "maxTokens",
            "temperature",
            "topP",
            "stopSequences",
        }:
            return "inferenceConfig has unknown members."
        max_tokens = inference.get("maxTokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            return "inferenceConfig.maxTokens must be an integer >= 1."
        for name in ("temperature", "topP"):
            if name in inference and not _number(inference[name], 0, 1):
                return f"inferenceConfig.{name} must be between 0 and 1."
        stops = inference.get("stopSequences")
        if stops is not None and (
            not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops)
        ):
            return "inferenceConfig.stopSequences must be a list of non-empty strings."
    if "toolConfig" in body:
        problem = _check_tool_config(body["toolConfig"])
        if problem:
            return problem
    elif uses_tools:
        return (
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    output = body.get("outputConfig")
    if output is not None:
        text_format = output.get("textFormat") if isinstance(output, dict) else None
        structure = text_format.get("structure") if isinstance(text_format, dict) else None
        schema = structure.get("jsonSchema") if isinstance(structure, dict) else None
        if (
            not isinstance(text_format, dict)
            or text_format.get("type") != "json_schema"
            or not isinstance(schema, dict)
            or not isinstance(schema.get("schema"), str)
        ):
            return "outputConfig.textFormat must be a json_schema with a schema string."
        try:
            orjson.loads(schema["schema"])
        except orjson.JSONDecodeError:
            return "outputConfig.textFormat.structure.jsonSchema.schema is not valid JSON."
    return None


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def _counted(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Converse messages in the shape the shared token counter reads (text and nested
    tool results)."""
    shaped = []
    for message in messages:
        parts = []
        for block in message["content"]:
            if "text" in block:
                parts.append({"text": block["text"]})
            elif "toolResult" in block:
                parts.append({"content": block["toolResult"].get("content") or []})
        shaped.append({"content": parts})
    return shaped


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    return " ".join(
        block["text"] for block in messages[-1]["content"] if isinstance(block.get("text"), str)
    )


def _tool(body: dict[str, Any]) -> _ToolCall | None:
    """The mock calls a tool when tools are offered and the last turn is no tool result."""
    config = body.get("toolConfig")
    if not isinstance(config, dict):
        return None
    last = body["messages"][-1]
    if last["role"] != "user" or any("toolResult" in block for block in last["content"]):
        return None
    specs = [t["toolSpec"] for t in config["tools"] if "toolSpec" in t]
    choice = config.get("toolChoice") or {}
    wanted = choice["tool"]["name"] if "tool" in choice else None
    chosen = next((s for s in specs if s["name"] == wanted), specs[0])
    return _ToolCall(chosen["name"], chosen["inputSchema"]["json"])


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens,
        "cacheReadInputTokens": 0,
        "cacheWriteInputTokens": 0,
    }


def _padding(payload: dict[str, Any]) -> dict[str, Any]:
    # Bedrock pads each event with a "p" field so that lengths reveal nothing.
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    size = 1 + (len(orjson.dumps(payload)) * 7) % len(letters)
    return {**payload, "p": letters[:size]}


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers, both checksums included."""
    encoded = b"".join(
        struct.pack(">B", len(name.encode()))
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """A ConverseStream event message of type ``kind``."""
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(_padding(payload)),
    )


def exception(kind: str, message: str) -> bytes:
    """A ConverseStream exception message (the stream ends after it)."""
    return frame(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )


class BedrockRuntime:
    """The Converse handlers of the mock Bedrock runtime."""

    def __init__(self, routes: Any) -> None:
        self.routes = routes

    async def _prologue(self, request: web.Request) -> _Call | web.StreamResponse:
        """Record the request and pick its behaviour, then authenticate it (as AWS does,
        before anything else) and apply injected failures."""

        async def unsigned(request: web.Request) -> web.Response | None:
            return authenticate(request, await request.read())

        return await self.routes.accept(request, render=_render, refuse=unsigned)

    async def converse(self, request: web.Request) -> web.StreamResponse:
        return await self._converse(request, stream=False)

    async def converse_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._converse(request, stream=True)

    async def _converse(self, request: web.Request, *, stream: bool) -> web.StreamResponse:
        routes = self.routes
        call = await self._prologue(request)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        problem = validate(body)
        if problem is not None:
            return _invalid(problem)

        b = call.behaviour
        messages = body["messages"]
        input_tokens = count_input_tokens(_counted(messages), body.get("system"))
        inference = body.get("inferenceConfig") or {}
        tool = _tool(body)
        marker_text = _last_user_text(messages)
        if tool is not None:
            units: tuple[str, ...] = tool.fragments
            stop_reason = "tool_use"
        else:
            units, why, _ = _answer_tokens(
                b.answer or b.output_tokens,
                inference.get("maxTokens"),
                inference.get("stopSequences") or [],
            )
            stop_reason = {"length": "max_tokens", "stop": "stop_sequence"}.get(
                why or "", "end_turn"
            )
            if CONTENT_FILTER_MARKER in marker_text:
                units, stop_reason = units[:1], "content_filtered"
        usage = _usage(input_tokens, len(units))
        extra = {"x-amzn-RequestId": str(uuid.uuid4())}
        if stream:
            found = _STREAM_EXCEPTION.search(marker_text)
            return await self._stream(
                request, call, tool, units, stop_reason, usage, extra, found and found[1]
            )
        started = time.monotonic()
        if b.latency_ms:
            await _sleep(b.latency_ms)
        if tool is not None:
            content: list[dict[str, Any]] = [
                {
                    "toolUse": {
                        "toolUseId": _rand_id("tooluse_"),
                        "name": tool.name,
                        "input": tool.arguments,
                    }
                }
            ]
        else:
            content = [{"text": routes._pad(_joined(units), b.body_bytes)}]
        payload = {
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop_reason,
            "usage": usage,
            "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
        }
        return routes._json(call, payload, extra)

    async def invoke(self, request: web.Request) -> web.StreamResponse:
        """InvokeModel with a Titan Text Embeddings V2 body."""
        routes = self.routes
        call = await self._prologue(request)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        extra = sorted(set(body) - {"inputText", "dimensions", "normalize", "embeddingTypes"})
        if extra:
            return _invalid(
                f"Malformed input request: extraneous key [{extra[0]}] is not permitted"
            )
        text = body.get("inputText")
        if not isinstance(text, str) or not text:
            return _invalid("Malformed input request: #: required key [inputText] not found")
        dims = body.get("dimensions", TITAN_DEFAULT_DIMENSIONS)
        if dims not in TITAN_DIMENSIONS or isinstance(dims, bool):
            return _invalid(
                f"Malformed input request: #/dimensions: {dims} is not a valid enum value"
            )
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        vector = _embedding_values(_embedding(text, dims))
        payload = {
            "embedding": vector,
            "embeddingsByType": {"float": vector},
            "inputTextTokenCount": max(len(text.split()), 1),
        }
        return routes._json(call, payload, {"x-amzn-RequestId": str(uuid.uuid4())})

    async def _stream(
        self,
        request: web.Request,
        call: _Call,
        tool: _ToolCall | None,
        units: tuple[str, ...],
        stop_reason: str,
        usage: dict[str, int],
        extra: Mapping[str, str],
        failure: str | None,
    ) -> web.StreamResponse:
        routes = self.routes
        b = call.behaviour
        headers = {"Content-Type": EVENT_STREAM, **extra}
        resp = web.StreamResponse(headers=headers)
        started = time.monotonic()
        async with routes.open_stream(request, resp, b):
            await resp.write(event("messageStart", {"role": "assistant"}))
            if tool is not None:
                await resp.write(
                    event(
                        "contentBlockStart",
                        {
                            "contentBlockIndex": 0,
                            "start": {
                                "toolUse": {"toolUseId": _rand_id("tooluse_"), "name": tool.name}
                            },
                        },
                    )
                )
            stall = b.stall_after_tokens
            for position, unit in enumerate(units):
                if stall is not None and position >= stall:
                    break
                if position and b.inter_token_ms:
                    await _sleep(b.inter_token_ms)
                delta = {"toolUse": {"input": unit}} if tool is not None else {"text": unit}
                await resp.write(
                    event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta})
                )
                if position == 0 and b.malformed == "sse":
                    # A message whose checksum does not hold.
                    broken = bytearray(event("contentBlockDelta", {"delta": {"text": "x"}}))
                    broken[-1] ^= 0xFF
                    await resp.write(bytes(broken))
                if position == 0 and failure:
                    await resp.write(exception(failure, f"Mock {failure} during the stream."))
                    await resp.write_eof()
                    return resp
            if stall is not None:
                await routes._hang(request)
                return resp
            if units or tool is not None:
                await resp.write(event("contentBlockStop", {"contentBlockIndex": 0}))
            await resp.write(event("messageStop", {"stopReason": stop_reason}))
            await resp.write(
                event(
                    "metadata",
                    {
                        "usage": usage,
                        "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
                    },
                )
            )
            await resp.write_eof()
        return resp


def endpoints(routes: Any) -> list[tuple[str, str, Any]]:
    """The mock Bedrock runtime's paths (under ``/bedrock`` and at the root, as the real
    endpoint serves them)."""
    runtime = BedrockRuntime(routes)
    paths = []
    for prefix in (PREFIX, ""):
        paths.append(("POST", f"{prefix}/model/{{model_id:.+}}/converse", runtime.converse))
        paths.append(
            ("POST", f"{prefix}/model/{{model_id:.+}}/converse-stream", runtime.converse_stream)
        )
        paths.append(("POST", f"{prefix}/model/{{model_id:.+}}/invoke", runtime.invoke))
    return paths
