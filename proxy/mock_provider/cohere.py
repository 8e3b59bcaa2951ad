"""Cohere's v2 API, as the mock serves it: ``POST /v2/chat`` and ``POST /v2/embed``.

As Cohere does: the key goes in ``Authorization: Bearer`` (401 ``no api key
supplied`` without it); a body with fields the endpoint does not know, a
missing model or messages, an unknown role or bad value is a 400; errors are
``{"id", "message"}``. Chat answers carry ``message.content`` text parts or
``tool_plan`` + ``tool_calls`` (the first tool is called when tools are given,
``tool_choice`` is not ``NONE`` and the last message is the user's), and
``usage`` with ``billed_units`` (the mock bills the words only) and ``tokens``
(the mock's token model, see :mod:`proxy.mock_provider.server`). Streams are
server-sent events named after their ``type``: ``message-start``,
``content-start``, ``content-delta``..., ``content-end`` for text;
``tool-plan-delta``..., ``tool-call-start``, ``tool-call-delta``...,
``tool-call-end`` for a tool call; then ``message-end`` with the finish reason
and usage.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from proxy.mock_provider.server import (
    DEFAULT_EMBEDDING_DIMS,
    JSON_HEADERS,
    _answer_tokens,
    _Call,
    _embedding,
    _embedding_values,
    _joined,
    _openai_tool,
    _phrase,
    _rand_id,
    _sleep,
    _ToolCall,
    count_input_tokens,
)

CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "tools",
        "strict_tools",
        "documents",
        "citation_options",
        "response_format",
        "safety_mode",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "k",
        "p",
        "logprobs",
        "tool_choice",
        "thinking",
        "priority",
    }
)
EMBED_FIELDS = frozenset(
    {
        "model",
        "texts",
        "images",
        "inputs",
        "input_type",
        "embedding_types",
        "output_dimension",
        "max_tokens",
        "truncate",
    }
)
ROLES = ("system", "user", "assistant", "tool")
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
_DEFAULT_MESSAGES = {
    401: "invalid api token",
    404: "model not found, make sure the correct model ID was used and that you have access "
    "to the model.",
    429: (
        "You are using a Trial key, which is limited to 20 API calls / minute. You can "
        "continue to use the Trial key for free or upgrade to a Production key with higher "
        "rate limits at 'https://dashboard.cohere.com/api-keys'."
    ),
    500: "internal server error, this has been reported to our developers.",
}
FINISHES = {None: "COMPLETE", "stop": "STOP_SEQUENCE", "length": "MAX_TOKENS"}


def cohere_error(
    status: int, message: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error in Cohere's ``{"id", "message"}`` envelope."""
    payload = {
        "id": str(uuid.uuid4()),
        "message": message or _DEFAULT_MESSAGES.get(status) or f"{status} {_phrase(status)}",
    }
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        reason=_phrase(status),
        headers={**JSON_HEADERS, "x-request-id": _rand_id(""), **(headers or {})},
    )


def _render(status: int, message: str | None, headers: Mapping[str, str]) -> web.Response:
    return cohere_error(status, message, headers)


def _invalid(message: str) -> web.Response:
    return cohere_error(400, f"invalid request: {message}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_messages(messages: Any) -> str | None:
    """What is wrong with a ``messages`` list, if anything."""
    if not isinstance(messages, list) or not messages:
        return "messages cannot be empty"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] must be an object"
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{i}].role must be one of {', '.join(ROLES)}"
        content = message.get("content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            return f"messages[{i}].tool_call_id is required for tool messages"
        if role == "assistant":
            if content is None and not message.get("tool_calls"):
                return f"messages[{i}] must have content or tool_calls"
        elif content is None:
            return f"messages[{i}].content is required"
        if isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "image_url" and role == "user":
                    image = part.get("image_url")
                    if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                        return f"messages[{i}].content[{j}].image_url.url is required"
                elif kind not in ("text", "document") or (
                    kind == "text" and not isinstance(part.get("text"), str)
                ):
                    return f"messages[{i}].content[{j}] has an invalid type"
        elif content is not None and not isinstance(content, str):
            return f"messages[{i}].content must be a string or a list"
    return None


def _tool_for(body: dict[str, Any]) -> _ToolCall | None:
    if body.get("tool_choice") == "NONE":
        return None
    # Cohere's tools are OpenAI-shaped; the core's choice rule applies.
    return _openai_tool({"tools": body.get("tools"), "messages": body.get("messages")})


async def _unauthenticated(request: web.Request) -> web.Response | None:
    """Cohere's 401 for a request without a bearer token."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return None
    return cohere_error(401, "no api key supplied")


class CohereRoutes:
    """The mock's Cohere handlers."""

    def __init__(self, routes: Any) -> None:
        self.routes = routes

    async def _open(
        self, request: web.Request, fields: frozenset[str]
    ) -> _Call | web.StreamResponse:
        """The common prologue: record, authenticate, inject failures, check the body's
        fields and model."""
        call = await self.routes.accept(request, render=_render, refuse=_unauthenticated)
        if isinstance(call, web.StreamResponse):
            return call
        unknown = sorted(set(call.body) - fields)
        if unknown:
            return _invalid(f"unknown field: parameter {unknown[0]} is not a valid field")
        model = call.body.get("model")
        if not isinstance(model, str) or not model:
            return _invalid("model is required")
        return call

    async def chat(self, request: web.Request) -> web.StreamResponse:
        call = await self._open(request, CHAT_FIELDS)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        problem = _check_messages(body.get("messages"))
        if problem is not None:
            return _invalid(problem)
        cap = body.get("max_tokens")
        if cap is not None and not _is_count(cap):
            return _invalid("max_tokens must be a positive integer")
        stops = body.get("stop_sequences") or []
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            return _invalid("stop_sequences must be a list of strings")
        if body.get("tool_choice") not in (None, "REQUIRED", "NONE"):
            return _invalid("tool_choice must be one of REQUIRED, NONE")
        if body.get("tool_choice") is not None and not body.get("tools"):
            return _invalid("tool_choice requires tools to be specified")
        tools = body.get("tools")
        if tools is not None and (
            not isinstance(tools, list)
            or not all(
                isinstance(t, dict)
                and t.get("type") == "function"
                and isinstance(t.get("function"), dict)
                and isinstance(t["function"].get("name"), str)
                for t in tools
            )
        ):
            return _invalid("tools must be a list of {type: function, function: {name, ...}}")
        format_ = body.get("response_format")
        if format_ is not None and (
            not isinstance(format_, dict) or format_.get("type") not in ("text", "json_object")
        ):
            return _invalid("response_format.type must be one of text, json_object")

        b = call.behaviour
        tool = _tool_for(body)
        if tool is not None:
            plan = _plan_tokens(tool.name)
            units: tuple[str, ...] = plan + tool.fragments
            finish = "TOOL_CALL"
        else:
            plan = ()
            units, why, _ = _answer_tokens(b.answer or b.output_tokens, cap, stops)
            finish = FINISHES[why]
        messages = body["messages"]
        usage = {
            "billed_units": {
                "input_tokens": max(count_input_tokens(messages) - 3 * len(messages), 1),
                "output_tokens": len(units),
            },
            "tokens": {"input_tokens": count_input_tokens(messages), "output_tokens": len(units)},
        }
        answer_id = str(uuid.uuid4())
        call_id = f"{tool.name}_{_rand_id('')[:12]}" if tool is not None else ""
        if body.get("stream") is True:
            return await self._stream(
                request, call, answer_id, tool, call_id, plan, units, finish, usage
            )
        if b.latency_ms:
            await _sleep(b.latency_ms)
        message: dict[str, Any] = {"role": "assistant"}
        if tool is not None:
            message["tool_plan"] = _joined(plan)
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": tool.name, "arguments": tool.arguments_json},
                }
            ]
        else:
            text = self.routes._pad(_joined(units), b.body_bytes)
            message["content"] = [{"type": "text", "text": text}]
        payload = {"id": answer_id, "message": message, "finish_reason": finish, "usage": usage}
        return self.routes._json(call, payload, {"x-request-id": _rand_id("")})

    async def _stream(
        self,
        request: web.Request,
        call: _Call,
        answer_id: str,
        tool: _ToolCall | None,
        call_id: str,
        plan: tuple[str, ...],
        units: tuple[str, ...],
        finish: str,
        usage: dict[str, Any],
    ) -> web.StreamResponse:
        routes = self.routes
        b = call.behaviour
        resp = routes._sse_response(call, {"x-request-id": _rand_id("")})
        async with routes.open_stream(request, resp, b):
            await resp.write(
                _event(
                    "message-start",
                    {
                        "id": answer_id,
                        "delta": {
                            "message": {
                                "role": "assistant",
                                "content": [],
                                "tool_plan": "",
                                "tool_calls": [],
                                "citations": [],
                            }
                        },
                    },
                )
            )
            if tool is None:
                await resp.write(
                    _event(
                        "content-start",
                        {
                            "index": 0,
                            "delta": {"message": {"content": {"type": "text", "text": ""}}},
                        },
                    )
                )
            stall = b.stall_after_tokens
            for position, unit in enumerate(units):
                if stall is not None and position >= stall:
                    break
                if position and b.inter_token_ms:
                    await _sleep(b.inter_token_ms)
                if tool is None:
                    await resp.write(
                        _event(
                            "content-delta",
                            {"index": 0, "delta": {"message": {"content": {"text": unit}}}},
                        )
                    )
                elif position < len(plan):
                    await resp.write(
                        _event("tool-plan-delta", {"delta": {"message": {"tool_plan": unit}}})
                    )
                else:
                    if position == len(plan):
                        await resp.write(
                            _event(
                                "tool-call-start",
                                {
                                    "index": 0,
                                    "delta": {
                                        "message": {
                                            "tool_calls": {
                                                "id": call_id,
                                                "type": "function",
                                                "function": {"name": tool.name, "arguments": ""},
                                            }
                                        }
                                    },
                                },
                            )
                        )
                    await resp.write(
                        _event(
                            "tool-call-delta",
                            {
                                "index": 0,
                                "delta": {
                                    "message": {"tool_calls": {"function": {"arguments": unit}}}
                                },
                            },
                        )
                    )
                if position == 0 and b.malformed == "sse":
                    await resp.write(b"event: content-delta\ndata: {not json\n\n")
            if stall is not None:
                await routes._hang(request)
                return resp
            if not units and b.malformed == "sse":
                await resp.write(b"event: content-delta\ndata: {not json\n\n")
            if tool is None:
                await resp.write(_event("content-end", {"index": 0}))
            else:
                await resp.write(_event("tool-call-end", {"index": 0}))
            await resp.write(
                _event("message-end", {"delta": {"finish_reason": finish, "usage": usage}})
            )
            await resp.write_eof()
        return resp

    async def embed(self, request: web.Request) -> web.StreamResponse:
        call = await self._open(request, EMBED_FIELDS)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _invalid("texts must be a non-empty list of strings")
        if body.get("input_type") not in INPUT_TYPES:
            return _invalid(
                "input_type is required for embed models v3 and higher, "
                f"and must be one of {', '.join(INPUT_TYPES)}"
            )
        types = body.get("embedding_types") or ["float"]
        if not isinstance(types, list) or any(t != "float" for t in types):
            return _invalid("the mock serves embedding_types ['float'] only")
        dims = body.get("output_dimension", DEFAULT_EMBEDDING_DIMS)
        if not _is_count(dims):
            return _invalid("output_dimension must be a positive integer")
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        vectors = [_embedding_values(_embedding(text, dims)) for text in texts]
        tokens = sum(max(len(text.split()), 1) for text in texts)
        payload = {
            "id": str(uuid.uuid4()),
            "texts": texts,
            "embeddings": {"float": vectors},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }
        return self.routes._json(call, payload, {"x-request-id": _rand_id("")})


def _plan_tokens(name: str) -> tuple[str, ...]:
    return ("I", " will", " use", f" {name}", ".")


def _event(name: str, payload: dict[str, Any]) -> bytes:
    data = orjson.dumps({"type": name, **payload})
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def endpoints(routes: Any) -> list[tuple[str, str, Any]]:
    """Cohere's paths."""
    cohere = CohereRoutes(routes)
    return [("POST", "/v2/chat", cohere.chat), ("POST", "/v2/embed", cohere.embed)]
