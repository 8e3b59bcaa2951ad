"""Anthropic's Messages API (``POST /v1/messages``).

Canonical requests become Messages requests: system messages move to
``system``, tool results become ``tool_result`` blocks of a user turn, tool
calls become ``tool_use`` blocks with their ids, images become ``image``
blocks. Answers and streams (``message_start`` … ``message_stop``) come back
as canonical completions and chunks. Anthropic clients reach Anthropic
without any of this (``native_request``).
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.canonical import (
    ChunkFactory,
    JSONEventDecoder,
    completion,
    image_url,
    invalid_answer,
    json_schema_format,
    parse_data_url,
    text_of,
    tool_arguments,
    tool_call,
    tool_call_start,
    unsupported,
)
from proxy.usage import Usage, usage_from_anthropic, with_anthropic_delta

API_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI-shaped requests often leave it out.
DEFAULT_MAX_TOKENS = 4096

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = image_url(part, where, "anthropic")
    inline = parse_data_url(url)
    if inline is not None:
        media_type, data = inline
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for index, part in enumerate(content if isinstance(content, list) else []):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part, f"{where}.content[{index}]"))
        else:
            raise unsupported(f"{where}.content[{index}]: content of type {kind!r}", "anthropic")
    return blocks


def _messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Canonical messages as Anthropic's system text and alternating turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for index, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
        elif role == "user":
            add("user", _content_blocks(message.get("content"), where))
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), where)
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": tool_arguments(function.get("arguments"), where, "anthropic"),
                    }
                )
            add("assistant", blocks)
        elif role in ("tool", "function"):
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id") or message.get("name"),
                "content": text_of(message.get("content")),
            }
            add("user", [result])
        else:
            raise unsupported(f"{where}: the role {role!r}", "anthropic", param=where)
    # Plain-text turns keep their simple form.
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            turn["content"] = blocks[0]["text"]
    return ("\n\n".join(part for part in system if part) or None), turns


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    result: dict[str, Any] | None
    if choice is None:
        result = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        result = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise unsupported(f"tool_choice {choice!r}", "anthropic", param="tool_choice")
    if parallel is False:
        result = {**(result or {"type": "auto"}), "disable_parallel_tool_use": True}
    return result


def messages_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """A canonical chat request as an Anthropic Messages request body."""
    if (payload.get("n") or 1) != 1:
        raise unsupported("'n' other than 1", "anthropic", param="n")
    output_config = _output_config(payload.get("response_format"))
    system, turns = _messages(payload["messages"])
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": payload.get("max_completion_tokens")
        or payload.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    if system is not None:
        body["system"] = system
    for source, name in (("temperature", "temperature"), ("top_p", "top_p")):
        if payload.get(source) is not None:
            body[name] = payload[source]
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = payload.get("tools")
    if tools:
        body["tools"] = [
            {
                "name": function.get("name"),
                **({"description": function["description"]} if function.get("description") else {}),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
            for function in (tool.get("function") or {} for tool in tools)
        ]
    choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
    if choice is not None and tools:
        body["tool_choice"] = choice
    if isinstance(payload.get("user"), str):
        body["metadata"] = {"user_id": payload["user"]}
    if output_config is not None:
        body["output_config"] = output_config
    if payload.get("stream"):
        body["stream"] = True
    return body


def _output_config(response_format: Any) -> dict[str, Any] | None:
    """``response_format`` as Anthropic's structured outputs (always strict)."""
    spec = json_schema_format(response_format, "anthropic")
    if spec is None:
        return None
    return {"format": {"type": "json_schema", "schema": spec.get("schema") or {"type": "object"}}}


def assistant_message(blocks: list[Any]) -> dict[str, Any]:
    """Anthropic content blocks of an assistant turn as a canonical message.

    Thinking blocks belong to the model that wrote them and are not carried.
    """
    text: list[str] = []
    calls = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block.get("id"), block.get("name"), block.get("input")))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        message["tool_calls"] = calls
    return message


class AnthropicAdapter:
    """Anthropic's Messages API; ``base_url`` ends in ``/v1``."""

    kind = "anthropic"
    wire = "anthropic"
    stream_content_type = "text/event-stream"
    options = {"version": f"the anthropic-version header (default {API_VERSION})"}

    def _request(self, target: Target, body: dict[str, Any]) -> UpstreamRequest:
        return UpstreamRequest(
            method="POST",
            url=f"{target.base_url}/messages",
            headers={
                "x-api-key": target.api_key,
                "anthropic-version": target.options.get("version", API_VERSION),
                "content-type": "application/json",
            },
            body=orjson.dumps(body),
        )

    def chat_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        return self._request(target, messages_request(payload, target.model))

    def native_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        if payload.get("model") != target.model:
            payload = {**payload, "model": target.model}
        return self._request(target, payload)

    def count_tokens_request(self, target: Target, payload: dict[str, Any]) -> UpstreamRequest:
        """An Anthropic ``count_tokens`` request, relayed as it is."""
        request = self.native_request(target, payload, stream=False)
        return UpstreamRequest(
            request.method, request.url + "/count_tokens", request.headers, request.body
        )

    def chat_response(self, data: Any, *, model: str) -> dict[str, Any]:
        if not isinstance(data, dict) or data.get("type") != "message":
            raise invalid_answer("not a message")
        return completion(
            model=data.get("model") or model,
            message=assistant_message(data.get("content") or []),
            finish_reason=STOP_REASONS.get(data.get("stop_reason") or "", "stop"),
            usage=usage_from_anthropic(data),
            id=data.get("id"),
        )

    def stream_decoder(self, *, model: str) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(model)


class AnthropicStreamDecoder(JSONEventDecoder):
    """Anthropic's stream events as canonical chunks."""

    skips_done = False  # Anthropic's streams end with message_stop, never [DONE]

    def __init__(self, model: str) -> None:
        super().__init__()
        self._chunks = ChunkFactory(model)
        # Content block index → tool call index, for tool_use blocks.
        self._tool_index: dict[int, int] = {}
        self._finish: str | None = None
        self._done = False

    def end(self, chunks: list[dict[str, Any]]) -> None:
        if not self._done:
            raise invalid_answer("the stream ended before message_stop")

    def event(self, data: dict[str, Any], out: list[dict[str, Any]]) -> None:
        kind = data.get("type")
        chunks = self._chunks
        if kind == "message_start":
            message = data.get("message") or {}
            if message.get("id"):
                chunks.id = message["id"]
            chunks.model = message.get("model") or chunks.model
            self.usage = usage_from_anthropic(message) or Usage()
            out.append(chunks.chunk({"role": "assistant", "content": ""}))
        elif kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index[data.get("index", 0)] = len(self._tool_index)
                call = tool_call_start(index, block.get("id"), block.get("name"))
                out.append(chunks.chunk({"tool_calls": [call]}))
            elif block.get("type") == "text" and block.get("text"):
                out.append(chunks.chunk({"content": block["text"]}))
        elif kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                out.append(chunks.chunk({"content": delta.get("text") or ""}))
            elif delta.get("type") == "input_json_delta":
                index = self._tool_index.get(data.get("index", 0), 0)
                fragment = {
                    "index": index,
                    "function": {"arguments": delta.get("partial_json", "")},
                }
                out.append(chunks.chunk({"tool_calls": [fragment]}))
        elif kind == "message_delta":
            delta = data.get("delta") or {}
            self._finish = STOP_REASONS.get(delta.get("stop_reason") or "", "stop")
            self.usage = with_anthropic_delta(self.usage, data)
            out.append(chunks.chunk({}, self._finish))
        elif kind == "message_stop":
            self._done = True
            if self.usage is not None:
                out.append(chunks.usage_chunk(self.usage))
        elif kind == "error":
            error = data.get("error") or {}
            raise invalid_answer(f"{error.get('type', 'error')}: {error.get('message', '')}"[:300])
