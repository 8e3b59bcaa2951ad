"""Builders for the canonical (OpenAI Chat Completions) shapes adapters return.

See :mod:`proxy.providers.base` for the shapes themselves.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from proxy.errors import GatewayError
from proxy.sse import Event, SSEParser
from proxy.usage import Usage

FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")


def completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def usage_dict(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def completion(
    *,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: Usage | None,
    id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A one-choice canonical completion."""
    result: dict[str, Any] = {
        "id": id or completion_id(),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        result["usage"] = usage_dict(usage)
    return result


class ChunkFactory:
    """Canonical chunks of one streamed answer, sharing its id, time and model."""

    __slots__ = ("created", "id", "model")

    def __init__(self, model: str, id: str | None = None) -> None:
        self.id = id or completion_id()
        self.created = int(time.time())
        self.model = model

    def chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, index: int = 0
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_dict(usage),
        }


class JSONEventDecoder:
    """The base of decoders of SSE streams whose events each carry one JSON
    object: events are parsed as they complete and handed to :meth:`event`;
    one that is not a JSON object ends the stream with a 502."""

    # Whether an OpenAI-style ``data: [DONE]`` event may end the stream.
    skips_done = True

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self._events = SSEParser()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._decode(self._events.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        chunks = self._decode(self._events.finish())
        self.end(chunks)
        return chunks

    def _decode(self, events: list[Event]) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        for event in events:
            if not event.data or (self.skips_done and event.data == b"[DONE]"):
                continue
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise invalid_answer("an event of the stream is not JSON") from None
            if not isinstance(data, dict):
                raise invalid_answer("an event of the stream is not an object")
            self.event(data, chunks)
        return chunks

    def event(self, data: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        """Append the canonical chunks of one event to ``chunks``."""
        raise NotImplementedError

    def end(self, chunks: list[dict[str, Any]]) -> None:
        """At the end of the stream: refuse an incomplete one, append what is left."""


def invalid_answer(detail: str) -> GatewayError:
    """The error for a provider answer the adapter cannot understand."""
    return GatewayError(
        502, f"the provider's answer could not be read: {detail}", code="upstream_invalid_response"
    )


def unsupported(what: str, provider_kind: str, param: str | None = None) -> GatewayError:
    """A 400 for a request feature the provider has no equivalent of."""
    return GatewayError(
        400,
        f"{what} is not supported by {provider_kind} providers",
        code="unsupported_parameter",
        param=param,
    )


def json_schema_format(response_format: Any, provider_kind: str) -> dict[str, Any] | None:
    """The ``json_schema`` spec (``name``, ``schema``, ...) of a canonical
    ``response_format``, or None for plain text; a 400 for schema-less JSON
    mode, which providers that constrain output only by a schema cannot do."""
    if not isinstance(response_format, dict) or response_format.get("type") in (None, "text"):
        return None
    if response_format.get("type") != "json_schema":
        raise unsupported(
            f"response_format {response_format.get('type')!r} (send 'json_schema')",
            provider_kind,
            param="response_format",
        )
    spec = response_format.get("json_schema")
    return spec if isinstance(spec, dict) else {}


def tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A canonical tool call; ``arguments`` (a provider's parsed input) as JSON text."""
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments or {}).decode()},
    }


def tool_call_start(position: int, call_id: Any, name: Any) -> dict[str, Any]:
    """The first streamed delta of a tool call (its arguments follow in fragments)."""
    return {
        "index": position,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }


def tool_arguments(arguments: Any, where: str, provider_kind: str) -> dict[str, Any]:
    """A canonical tool call's arguments as the JSON object providers take as input."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise unsupported(
            f"{where}: tool call arguments that are not JSON", provider_kind
        ) from None
    if not isinstance(value, dict):
        raise unsupported(f"{where}: tool call arguments that are not an object", provider_kind)
    return value


def image_url(part: dict[str, Any], where: str, provider_kind: str) -> str:
    """The URL of a canonical ``image_url`` content part, or a 400."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise unsupported(f"{where}: an image without a URL", provider_kind)
    return url


def text_of(content: Any) -> str:
    """The text of a canonical message content (a string or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64 data)`` of a ``data:`` image URL, else None."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    return header[: -len(";base64")] or "application/octet-stream", data
