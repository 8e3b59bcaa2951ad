"""Anthropic-compatible front door: ``/anthropic/v1/messages`` (also
``/v1/messages``) and ``/anthropic/v1/messages/count_tokens``.

Requests to an Anthropic provider go as they came and their answers come back
untouched. For any other provider the request is read into the canonical
(OpenAI) shape, and the answer, streamed or not, is written back as an
Anthropic message: content blocks, ``stop_reason``, usage, and the stream's
``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``
sequence with a ``ping`` after the start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from typing import Any

import orjson

from proxy import cache, guarding
from proxy.chat import ChatConsumer
from proxy.errors import GatewayError, bad_request
from proxy.openai_api import ModelsConsumer
from proxy.providers.anthropic import assistant_message
from proxy.providers.base import ProviderAdapter
from proxy.snapshot import store
from proxy.sse import encode
from proxy.streaming import Exchange, forward
from proxy.translation import Answer, Passthrough, Translation, openai_usage_chunk
from proxy.usage import AnthropicStreamScanner, Usage, usage_from_anthropic, usage_from_openai

# Status → Anthropic's error ``type`` (what its SDK and clients expect).
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}

FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def anthropic_error_body(error: GatewayError) -> bytes:
    kind = ANTHROPIC_TYPES.get(error.status, "api_error" if error.status >= 500 else None)
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": kind or "invalid_request_error", "message": error.message},
        }
    )


# --- the request, as the canonical shape ---------------------------------------------


def validate_messages(payload: dict[str, Any]) -> tuple[str, bool]:
    """The model name and stream flag of a Messages request, or a 400."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model: Field required (a non-empty string).", param="model")
    max_tokens = payload.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise bad_request("max_tokens: Field required (an integer >= 1).", param="max_tokens")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages: Field required (a non-empty array).", param="messages")
    for index, message in enumerate(messages):
        if (
            not isinstance(message, dict)
            or message.get("role") not in ("user", "assistant")
            or not isinstance(message.get("content"), str | list)
        ):
            raise bad_request(
                f"messages.{index}: each message needs a role (user or assistant) and content.",
                param=f"messages.{index}",
            )
        _validate_blocks(message["content"], f"messages.{index}.content")
    system = payload.get("system")
    if system is not None and not isinstance(system, str | list):
        raise bad_request("system: must be a string or an array of text blocks.", param="system")
    _validate_blocks(system, "system")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_request("stream: must be a boolean.", param="stream")
    for name in ("tools", "stop_sequences"):
        if payload.get(name) is not None and not isinstance(payload[name], list):
            raise bad_request(f"{name}: must be an array.", param=name)
    _validate_output_config(payload.get("output_config"))
    return model, bool(stream)


# The field of each translated block kind that the gateway reads, and its types.
_BLOCK_FIELDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "text": ("text", str),
    "image": ("source", dict),
    "tool_result": ("content", (str, list, type(None))),
}


def _validate_blocks(content: Any, where: str) -> None:
    """Content given as blocks: each an object with a string ``type``, and the
    fields the gateway reads of the kinds it translates of the right type
    (text a string, an image's source an object, a tool result's content a
    string or blocks), as Anthropic checks them: a 400 naming the block."""
    if not isinstance(content, list):
        return
    for index, block in enumerate(content):
        at = f"{where}.{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad_request(f"{at}: a content block must be an object with a type.", param=at)
        kind = block["type"]
        field, types = _BLOCK_FIELDS.get(kind, ("", object))
        if field and not isinstance(block.get(field), types):
            raise bad_request(
                f"{at}.{field}: wrong type for a {kind} block.", param=f"{at}.{field}"
            )
        if kind == "tool_result":
            _validate_blocks(block.get("content"), f"{at}.content")


def _validate_output_config(config: Any) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise bad_request("output_config: must be an object.", param="output_config")
    fmt = config.get("format")
    if fmt is not None and (
        not isinstance(fmt, dict)
        or fmt.get("type") != "json_schema"
        or not isinstance(fmt.get("schema"), dict)
    ):
        raise bad_request(
            "output_config.format: must be {'type': 'json_schema', 'schema': {...}}.",
            param="output_config.format",
        )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        block.get("text") or ""
        for block in content or []
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif source.get("type") == "url":
        url = source.get("url")
    else:
        raise bad_request(f"{where}: an image source must be base64 or url.", param=where)
    return {"type": "image_url", "image_url": {"url": url}}


def _user_messages(content: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic user turn: its tool results as tool messages, then its content."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        at = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": block.get("text") or ""})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            text = _text(block.get("content"))
            if block.get("is_error"):
                text = f"Error: {text}"
            results.append(
                {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}
            )
        else:
            raise bad_request(
                f"{at}: content blocks of type {kind!r} cannot be sent to this model.", param=at
            )
    messages = results
    if parts:
        plain = all(part["type"] == "text" for part in parts)
        body: Any = "".join(part["text"] for part in parts) if plain else parts
        messages = [*results, {"role": "user", "content": body}]
    return messages


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    if not isinstance(choice, dict):
        return None, None
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "any":
        return "required", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    if kind == "none":
        return "none", parallel
    return "auto", parallel


def to_canonical(payload: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """An Anthropic Messages request in the canonical (OpenAI) shape."""
    messages: list[dict[str, Any]] = []
    system = payload.get("system")
    if system:
        messages.append({"role": "system", "content": _text(system)})
    for index, message in enumerate(payload["messages"]):
        if message["role"] == "user":
            messages.extend(_user_messages(message["content"], f"messages.{index}"))
        else:
            content = message["content"]
            if isinstance(content, str):
                messages.append({"role": "assistant", "content": content})
            else:
                messages.append(assistant_message(content))
    canonical: dict[str, Any] = {
        "model": payload["model"],
        "messages": messages,
        "max_tokens": payload["max_tokens"],
    }
    for name in ("temperature", "top_p"):
        if payload.get(name) is not None:
            canonical[name] = payload[name]
    if payload.get("stop_sequences"):
        canonical["stop"] = payload["stop_sequences"]
    tools = [
        tool
        for tool in payload.get("tools") or []
        if isinstance(tool, dict) and tool.get("input_schema") is not None
    ]
    if tools:
        canonical["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.get("name"),
                    **({"description": tool["description"]} if tool.get("description") else {}),
                    "parameters": tool["input_schema"],
                },
            }
            for tool in tools
        ]
        choice, parallel = _tool_choice(payload.get("tool_choice"))
        if choice is not None:
            canonical["tool_choice"] = choice
        if parallel is not None:
            canonical["parallel_tool_calls"] = parallel
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        canonical["user"] = metadata["user_id"]
    output_format = (payload.get("output_config") or {}).get("format")
    if output_format is not None:
        canonical["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output_format["schema"], "strict": True},
        }
    if stream:
        canonical["stream"] = True
        canonical["stream_options"] = {"include_usage": True}
    return canonical


# --- the answer, as an Anthropic message ---------------------------------------------


def message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def anthropic_usage(usage: Usage | None) -> dict[str, int]:
    usage = usage or Usage()
    return {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.output_tokens,
    }


def _tool_input(arguments: Any) -> Any:
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        # A model's malformed arguments are still the model's answer.
        return {"arguments": arguments}


def encode_message(canonical: dict[str, Any], model: str) -> bytes:
    """A canonical completion as an Anthropic message body."""
    choice = (canonical.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _tool_input(function.get("arguments")),
            }
        )
    return orjson.dumps(
        {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
            "stop_sequence": None,
            "usage": anthropic_usage(usage_from_openai(canonical)),
        }
    )


class AnthropicEventEncoder:
    """Canonical chunks as Anthropic's stream of events.

    Anthropic announces each content block before its deltas and closes it
    after; a new text or tool call closes the block before it. Its usage
    arrives with ``message_delta`` at the end, so that event waits for the
    canonical usage chunk (or the end of the stream).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.delta_events = 0
        self._started = False
        self._block = -1  # index of the open content block, -1 if none
        self._block_kind = ""
        self._tool_blocks: dict[int, int] = {}  # tool call index → block index
        self._stop_reason: str | None = None
        self._usage: Usage | None = None
        self._ended = False

    def _event(self, name: str, data: dict[str, Any]) -> bytes:
        return encode(orjson.dumps(data), name)

    def _start(self) -> bytes:
        self._started = True
        message = {
            "id": message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return self._event(
            "message_start", {"type": "message_start", "message": message}
        ) + self._event("ping", {"type": "ping"})

    def _close_block(self) -> bytes:
        if self._block < 0 or not self._block_kind:
            return b""
        self._block_kind = ""
        return self._event(
            "content_block_stop", {"type": "content_block_stop", "index": self._block}
        )

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._block += 1
        self._block_kind = kind
        return out + self._event(
            "content_block_start",
            {"type": "content_block_start", "index": self._block, "content_block": block},
        )

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        self.delta_events += 1
        return self._event(
            "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        )

    def encode(self, chunks: list[dict[str, Any]]) -> bytes:
        out: list[bytes] = []
        for chunk in chunks:
            if not self._started:
                out.append(self._start())
            if openai_usage_chunk(chunk):
                self._usage = usage_from_openai(chunk)
                continue
            if chunk.get("usage"):
                self._usage = usage_from_openai(chunk)
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue  # Anthropic's messages have one answer
                out.append(self._choice(choice))
        return b"".join(out)

    def _choice(self, choice: dict[str, Any]) -> bytes:
        out = []
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            if self._block_kind != "text":
                out.append(self._open_block("text", {"type": "text", "text": ""}))
            out.append(self._delta(self._block, {"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or []:
            position = call.get("index", 0)
            function = call.get("function") or {}
            if position not in self._tool_blocks:
                block = {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{os.urandom(12).hex()}",
                    "name": function.get("name") or "",
                    "input": {},
                }
                out.append(self._open_block("tool_use", block))
                self._tool_blocks[position] = self._block
            arguments = function.get("arguments")
            if arguments:
                out.append(
                    self._delta(
                        self._tool_blocks[position],
                        {"type": "input_json_delta", "partial_json": arguments},
                    )
                )
        reason = choice.get("finish_reason")
        if reason:
            self._stop_reason = FINISH_TO_STOP.get(reason, "end_turn")
            out.append(self._close_block())
        return b"".join(out)

    def finish(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        out = [b"" if self._started else self._start(), self._close_block()]
        out.append(
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": self._stop_reason or "end_turn",
                        "stop_sequence": None,
                    },
                    "usage": anthropic_usage(self._usage),
                },
            )
        )
        out.append(self._event("message_stop", {"type": "message_stop"}))
        return b"".join(out)


# --- the consumers -------------------------------------------------------------------


# Anthropic answers relayed untouched (stateless: each stream gets its own scanner).
ANTHROPIC_PASSTHROUGH = Passthrough(
    "text/event-stream", usage_from_anthropic, AnthropicStreamScanner
)


class AnthropicErrors:
    """Errors in Anthropic's envelope, also in the middle of a stream."""

    def error_body(self, error: GatewayError) -> bytes:
        return anthropic_error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return encode(anthropic_error_body(error), "error")


class MessagesConsumer(AnthropicErrors, ChatConsumer):
    """``POST /anthropic/v1/messages`` (and ``/v1/messages``), streaming and not."""

    endpoint = "messages"

    wire = "anthropic"
    response_shape = guarding.ANTHROPIC
    cache_wire = cache.ANTHROPIC_MESSAGES
    forwarded_headers = (b"anthropic-beta",)

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        return validate_messages(payload)

    def canonical(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        return to_canonical(payload, stream=stream)

    def passthrough(self, payload: dict[str, Any]) -> Answer:
        return ANTHROPIC_PASSTHROUGH

    def translation(self, adapter: ProviderAdapter, model: str, payload: dict[str, Any]) -> Answer:
        requested = payload["model"]
        return Translation(
            adapter,
            model,
            lambda canonical: encode_message(canonical, requested),
            lambda: AnthropicEventEncoder(requested),
        )


class AnthropicModelsConsumer(AnthropicErrors, ModelsConsumer):
    """``GET /anthropic/v1/models``: the caller's models in Anthropic's list shape."""

    async def handle(self, body: bytes) -> None:
        created = dt.datetime.fromtimestamp(int(store.current.built_at), dt.UTC).isoformat()
        data = [
            {"type": "model", "id": name, "display_name": name, "created_at": created}
            for name, _ in await self.allowed_routes()
        ]
        listing = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        await self.send_json(200, orjson.dumps(listing))


class CountTokensConsumer(AnthropicErrors, ChatConsumer):
    """``POST /anthropic/v1/messages/count_tokens``: counted by an Anthropic
    provider, by the gateway's tokenizer for others. Costs nothing, so it is
    not admitted against limits; it is recorded."""

    endpoint = "count_tokens"

    forwarded_headers = (b"anthropic-beta",)

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise bad_request("model: Field required (a non-empty string).", param="model")
        if not isinstance(payload.get("messages"), list):
            raise bad_request("messages: Field required (an array).", param="messages")
        return model, False

    async def handle(self, body: bytes) -> None:
        addressed = await self.address(body)
        payload, route = addressed.payload, addressed.route
        if addressed.guardrails is not None and addressed.guardrails.request:
            # The text goes to the provider to be counted: checked as for a message.
            # The limits are not applied: a count is how a client learns them.
            payload = await guarding.check_request(
                self, addressed.guardrails, payload, limits=False
            )
        self.entry.update(provider=route.provider.name, served_model=route.provider_model)
        adapter = route.provider.adapter
        provider_key = route.provider.pick_key()
        counter = getattr(adapter, "count_tokens_request", None)
        if counter is None or provider_key is None:
            counted = await asyncio.to_thread(self.count_input, payload)
            await self.send_json(200, orjson.dumps({"input_tokens": counted}))
            return
        # A count carries no usage: usage_from_anthropic finds none in it.
        await forward(
            self,
            self.with_client_headers(counter(route.target(provider_key), payload)),
            stream=False,
            served_by=[(b"x-gateway-provider", route.provider.name.encode())],
            exchange=Exchange(),
            answer=ANTHROPIC_PASSTHROUGH,
            adapter=adapter,
        )
