"""Cohere's Chat API v2 (``POST /v2/chat``) and Embed API v2 (``POST /v2/embed``).

Requests: OpenAI's messages map nearly one to one (system, user, assistant,
tool roles; text and ``image_url`` parts; OpenAI-shaped tools). Cohere names
sampling parameters its own way (``p``, ``k``, ``stop_sequences``), forces
tool use with ``tool_choice`` ``REQUIRED``/``NONE`` only (a named function is
forced by offering just that tool), and puts the model's text before tool
calls in ``tool_plan``, which maps to the assistant's ``content`` both ways.
Cohere refuses fields it does not know, so only mapped fields are sent.

Answers: ``message.content`` text parts, ``tool_calls`` with Cohere's ids,
``finish_reason`` (``COMPLETE``, ``STOP_SEQUENCE``, ``MAX_TOKENS``,
``TOOL_CALL``; ``ERROR``/``TIMEOUT`` are failures) and usage in
``usage.tokens`` (what the model processed; ``billed_units`` is the fallback).
Streams are server-sent events named by their ``type`` (``message-start``,
``content-delta``, ``tool-call-start``, ``tool-call-delta``, ``message-end``...).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from proxy.errors import GatewayError
from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.canonical import (
    ChunkFactory,
    JSONEventDecoder,
    completion,
    invalid_answer,
    text_of,
    tool_call_start,
    unsupported,
)
from proxy.usage import Usage

KIND = "cohere"
DEFAULT_EMBED_INPUT_TYPE = "search_document"

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
# Finishes that mean the generation failed, with the status the client sees.
FAILED_FINISHES = {"ERROR": 502, "TIMEOUT": 504}

# Canonical request fields with no effect on what the provider answers: safe to drop.
_IGNORED = frozenset({"model", "messages", "stream", "stream_options", "user", "store", "metadata"})
_ROLES = ("system", "developer", "user", "assistant", "tool")


class CohereAdapter:
    """Chat (and embeddings) translated to and from Cohere's v2 API."""

    kind = KIND
    wire = KIND
    stream_content_type = "text/event-stream"
    options: dict[str, str] = {
        "embed_input_type": (
            "input_type sent with embeddings requests (search_document, search_query, "
            f"classification, clustering; default {DEFAULT_EMBED_INPUT_TYPE})."
        ),
        "safety_mode": "Cohere's safety_mode for chat (CONTEXTUAL, STRICT or OFF).",
    }

    def chat_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        return _post(target, "/v2/chat", chat_body(target, payload, stream=stream))

    def native_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        body = {**payload, "model": target.model, "stream": stream}
        return _post(target, "/v2/chat", body)

    def chat_response(self, data: Any, *, model: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            raise invalid_answer("no 'message' in the chat response")
        finish = _finish(data.get("finish_reason"))
        message = data["message"]
        text = _content_text(message.get("content"))
        tool_calls = [_tool_call(call) for call in message.get("tool_calls") or ()]
        canonical: dict[str, Any] = {"role": "assistant", "content": text}
        if tool_calls:
            # The plan is the model's text before it calls tools.
            plan = message.get("tool_plan")
            canonical["content"] = text or (plan if isinstance(plan, str) and plan else None)
            canonical["tool_calls"] = tool_calls
        answer_id = data.get("id")
        return completion(
            model=model,
            message=canonical,
            finish_reason=finish,
            usage=usage_from_cohere(data.get("usage")),
            id=f"chatcmpl-{answer_id}" if isinstance(answer_id, str) and answer_id else None,
        )

    def stream_decoder(self, *, model: str) -> CohereStreamDecoder:
        return CohereStreamDecoder(model)

    # -- embeddings ---------------------------------------------------------------------

    def embeddings_request(self, target: Target, payload: dict[str, Any]) -> UpstreamRequest:
        """An OpenAI embeddings request as Cohere's ``/v2/embed``."""
        raw = payload.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise unsupported("Token arrays as embeddings input", KIND, param="input")
        body: dict[str, Any] = {
            "model": target.model,
            "texts": texts,
            "input_type": target.options.get("embed_input_type") or DEFAULT_EMBED_INPUT_TYPE,
            "embedding_types": ["float"],
        }
        if payload.get("dimensions") is not None:
            body["output_dimension"] = payload["dimensions"]
        return _post(target, "/v2/embed", body)

    def embeddings_response(
        self, data: Any, *, model: str, encoding_format: str = "float"
    ) -> dict[str, Any]:
        """Cohere's embed answer as OpenAI's embeddings list."""
        embeddings = data.get("embeddings") if isinstance(data, dict) else None
        vectors = embeddings.get("float") if isinstance(embeddings, dict) else None
        if not isinstance(vectors, list):
            raise invalid_answer("no float embeddings in the embed response")
        items = []
        for index, vector in enumerate(vectors):
            if not isinstance(vector, list):
                raise invalid_answer("an embedding is not a list of numbers")
            value: Any = vector
            if encoding_format == "base64":
                # OpenAI's base64 is little-endian float32.
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            items.append({"object": "embedding", "index": index, "embedding": value})
        meta = data.get("meta")
        billed = meta.get("billed_units") if isinstance(meta, dict) else None
        tokens = _count(billed.get("input_tokens")) if isinstance(billed, dict) else 0
        return {
            "object": "list",
            "data": items,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _post(target: Target, path: str, body: dict[str, Any]) -> UpstreamRequest:
    return UpstreamRequest(
        method="POST",
        url=f"{target.base_url}{path}",
        headers={
            "authorization": f"Bearer {target.api_key}",
            "content-type": "application/json",
            "accept": "application/json",
        },
        body=orjson.dumps(body),
    )


# -- requests ---------------------------------------------------------------------------


def chat_body(target: Target, payload: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    """The ``/v2/chat`` body for a canonical request."""
    body: dict[str, Any] = {
        "model": target.model,
        "messages": [_message(m, i) for i, m in enumerate(payload["messages"])],
        "stream": stream,
    }
    unknown = set(payload) - _IGNORED
    if (payload.get("n") or 1) != 1:
        raise unsupported("More than one choice (n > 1)", KIND, param="n")
    unknown.discard("n")
    if payload.get("logprobs") or payload.get("top_logprobs"):
        raise unsupported("logprobs", KIND, param="logprobs")
    unknown -= {"logprobs", "top_logprobs"}
    if payload.get("logit_bias"):
        raise unsupported("logit_bias", KIND, param="logit_bias")
    unknown.discard("logit_bias")

    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    unknown -= {"max_completion_tokens", "max_tokens"}
    for canonical, cohere in (
        ("temperature", "temperature"),
        ("top_p", "p"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ):
        if payload.get(canonical) is not None:
            body[cohere] = payload[canonical]
        unknown.discard(canonical)
    stop = payload.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = stop
    unknown.discard("stop")
    format_ = _response_format(payload.get("response_format"))
    if format_ is not None:
        body["response_format"] = format_
    unknown.discard("response_format")
    _tools(payload, body)
    unknown -= {"tools", "tool_choice", "parallel_tool_calls"}
    if target.options.get("safety_mode"):
        body["safety_mode"] = target.options["safety_mode"]
    for name in sorted(unknown):
        # Unknown-but-empty values (None, False) change nothing; anything else would be lost.
        if payload[name] not in (None, False):
            raise unsupported(f"The '{name}' parameter", KIND, param=name)
    return body


def _message(message: dict[str, Any], index: int) -> dict[str, Any]:
    role = message.get("role")
    if role not in _ROLES:
        raise unsupported(f"The message role '{role}'", KIND, param=f"messages[{index}].role")
    content = message.get("content")
    if role in ("system", "developer"):
        return {"role": "system", "content": text_of(content)}
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.get("tool_call_id"),
            "content": text_of(content),
        }
    if role == "user":
        return {"role": "user", "content": _user_content(content, index)}
    result: dict[str, Any] = {"role": "assistant"}
    calls = message.get("tool_calls")
    text = text_of(content)
    if calls:
        result["tool_calls"] = [
            {
                "id": call.get("id"),
                "type": "function",
                "function": {
                    "name": call.get("function", {}).get("name"),
                    "arguments": call.get("function", {}).get("arguments") or "{}",
                },
            }
            for call in calls
        ]
        if text:
            result["tool_plan"] = text
    else:
        result["content"] = text
    return result


def _user_content(content: Any, index: int) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise unsupported("An image part without a URL", KIND, param="messages")
            # Cohere takes data: URLs and http(s) URLs alike.
            item: dict[str, Any] = {"url": url}
            if isinstance(image, dict) and image.get("detail"):
                item["detail"] = image["detail"]
            parts.append({"type": "image_url", "image_url": item})
        else:
            raise unsupported(
                f"Message content of type '{kind}'", KIND, param=f"messages[{index}].content"
            )
    return parts


def _response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("type") in (None, "text"):
        return None
    if value["type"] == "json_object":
        return {"type": "json_object"}
    if value["type"] == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        result: dict[str, Any] = {"type": "json_object"}
        if isinstance(schema, dict):
            result["json_schema"] = schema
        return result
    raise unsupported(f"response_format '{value['type']}'", KIND, param="response_format")


def _tools(payload: dict[str, Any], body: dict[str, Any]) -> None:
    tools = payload.get("tools")
    choice = payload.get("tool_choice")
    if not tools:
        return
    functions = []
    strict = False
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise unsupported(f"Tools of type '{kind}'", KIND, param="tools")
        function = dict(tool.get("function") or {})
        strict = strict or bool(function.pop("strict", False))
        functions.append({"type": "function", "function": function})
    if isinstance(choice, dict):
        # Cohere cannot name the tool to call: offer only that one and require a call.
        wanted = (choice.get("function") or {}).get("name")
        functions = [f for f in functions if f["function"].get("name") == wanted]
        if not functions:
            raise GatewayError(
                400,
                f"tool_choice names the function '{wanted}', which is not in tools",
                code="invalid_value",
                param="tool_choice",
            )
        body["tool_choice"] = "REQUIRED"
    elif choice == "required":
        body["tool_choice"] = "REQUIRED"
    elif choice == "none":
        body["tool_choice"] = "NONE"
    body["tools"] = functions
    if strict:
        body["strict_tools"] = True


# -- answers ----------------------------------------------------------------------------


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def usage_from_cohere(usage: Any) -> Usage | None:
    """Usage from Cohere's ``usage``: ``tokens`` when given, else ``billed_units``."""
    if not isinstance(usage, dict):
        return None
    counts = usage.get("tokens")
    if not isinstance(counts, dict):
        counts = usage.get("billed_units")
    if not isinstance(counts, dict):
        return None
    return Usage(
        input_tokens=_count(counts.get("input_tokens")),
        output_tokens=_count(counts.get("output_tokens")),
        cached_tokens=_count(usage.get("cached_tokens")),
    )


def _finish(reason: Any) -> str:
    if reason in FAILED_FINISHES:
        status = FAILED_FINISHES[reason]
        raise GatewayError(
            status,
            f"the provider could not complete the answer (finish_reason {reason})",
            code="upstream_timeout" if status == 504 else "upstream_error",
            retryable=True,
        )
    return FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    # "thinking" parts are the model's reasoning, not its answer.
    return "".join(
        part["text"]
        for part in content
        if isinstance(part, dict)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    )


def _arguments(value: Any) -> str:
    # Cohere may send null (or nothing) for a tool without parameters.
    if value is None or value == "null" or value == "":
        return "{}"
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _tool_call(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid_answer("a tool call without a function name")
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": function["name"], "arguments": _arguments(function.get("arguments"))},
    }


class CohereStreamDecoder(JSONEventDecoder):
    """Cohere's chat stream events as canonical chunks."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._chunks = ChunkFactory(model)
        self._started = False
        self._ended = False
        # Cohere indexes tool calls per message from 0, as OpenAI does.
        self._tool_index: int | None = None
        self._thinking: set[int] = set()

    def end(self, chunks: list[dict[str, Any]]) -> None:
        if not self._ended:
            raise invalid_answer("the stream ended before its message-end event")

    def _start(self, out: list[dict[str, Any]]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunks.chunk({"role": "assistant", "content": ""}))

    def event(self, event: dict[str, Any], out: list[dict[str, Any]]) -> None:
        kind = event.get("type")
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        message = delta.get("message") if isinstance(delta.get("message"), dict) else {}
        if kind == "message-start":
            answer_id = event.get("id")
            if isinstance(answer_id, str) and answer_id and not self._started:
                self._chunks.id = f"chatcmpl-{answer_id}"
            self._start(out)
        elif kind == "content-start":
            self._start(out)
            content = message.get("content")
            if isinstance(content, dict) and content.get("type") == "thinking":
                self._thinking.add(event.get("index", 0))
            elif isinstance(content, dict) and content.get("text"):
                out.append(self._chunks.chunk({"content": content["text"]}))
        elif kind == "content-delta":
            self._start(out)
            content = message.get("content")
            text = content.get("text") if isinstance(content, dict) else None
            if isinstance(text, str) and text and event.get("index", 0) not in self._thinking:
                out.append(self._chunks.chunk({"content": text}))
        elif kind == "tool-plan-delta":
            self._start(out)
            plan = message.get("tool_plan")
            if isinstance(plan, str) and plan:
                out.append(self._chunks.chunk({"content": plan}))
        elif kind == "tool-call-start":
            self._start(out)
            self._tool_call_start(message.get("tool_calls"), out)
        elif kind == "tool-call-delta":
            calls = message.get("tool_calls")
            function = calls.get("function") if isinstance(calls, dict) else None
            fragment = function.get("arguments") if isinstance(function, dict) else None
            if self._tool_index is None:
                raise invalid_answer("a tool-call-delta event before its tool-call-start")
            if isinstance(fragment, str) and fragment:
                out.append(self._arguments_chunk(fragment))
        elif kind == "message-end":
            self._start(out)
            finish = _finish(delta.get("finish_reason"))
            out.append(self._chunks.chunk({}, finish))
            usage = usage_from_cohere(delta.get("usage"))
            if usage is not None:
                self.usage = usage
                out.append(self._chunks.usage_chunk(usage))
            self._ended = True
        # content-end, tool-call-end, citation-start/-end and debug carry nothing to relay.

    def _tool_call_start(self, call: Any, out: list[dict[str, Any]]) -> None:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid_answer("a tool-call-start event without a function name")
        self._tool_index = 0 if self._tool_index is None else self._tool_index + 1
        start = tool_call_start(self._tool_index, call.get("id"), function["name"])
        out.append(self._chunks.chunk({"tool_calls": [start]}))
        first = function.get("arguments")
        if isinstance(first, str) and first:
            out.append(self._arguments_chunk(first))

    def _arguments_chunk(self, fragment: str) -> dict[str, Any]:
        return self._chunks.chunk(
            {"tool_calls": [{"index": self._tool_index, "function": {"arguments": fragment}}]}
        )
