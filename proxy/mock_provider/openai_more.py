"""OpenAI's legacy text completions (``/v1/completions``) and the Responses API
(``/v1/responses``), streamed and not, in the shapes OpenAI documents."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from proxy.mock_provider.server import (
    OPENAI_GATE,
    Gate,
    _answer_tokens,
    _int_param,
    _rand_id,
    _request_id,
    _Routes,
    _sleep,
    _stop_list,
    _ToolCall,
    count_input_tokens,
    openai_error,
)


def _prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, list):
        if all(isinstance(p, int) for p in prompt):  # one prompt of token ids
            return len(prompt) or 1
        return sum(len(p.split()) if isinstance(p, str) else len(p) for p in prompt) or 1
    return max(1, len(str(prompt).split()))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


async def completions(
    routes: _Routes, request: web.Request, gate: Gate = OPENAI_GATE
) -> web.StreamResponse:
    call = await routes.accept(request, render=gate.render, refuse=gate.refuse)
    if isinstance(call, web.StreamResponse):
        return call
    body: dict[str, Any] = call.body
    model = body.get("model") or gate.model
    if not isinstance(model, str):
        return openai_error(400, "you must provide a model parameter", param="model")
    prompt = body.get("prompt")
    if prompt is None:
        return openai_error(400, "Missing required parameter: 'prompt'.", param="prompt")
    try:
        cap = _int_param(body, "max_tokens") or 16
    except ValueError as exc:
        return openai_error(400, f"Invalid '{exc}'.", param=str(exc), code="invalid_value")
    b = call.behaviour
    units, why, _ = _answer_tokens(b.answer or b.output_tokens, cap, _stop_list(body.get("stop")))
    finish = "length" if why == "length" else "stop"
    usage = _usage(_prompt_tokens(prompt), len(units))
    head = {
        "id": _rand_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    extra = {"x-request-id": _request_id()}
    if body.get("stream") is not True:
        if b.latency_ms:
            await _sleep(b.latency_ms)
        choice = {"text": "".join(units), "index": 0, "logprobs": None, "finish_reason": finish}
        return routes._json(call, {**head, "choices": [choice], "usage": usage}, extra)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    resp = routes._sse_response(call, extra)
    async with routes.open_stream(request, resp, b):
        for position, unit in enumerate(units):
            if position and b.inter_token_ms:
                await _sleep(b.inter_token_ms)
            choice = {"text": unit, "index": 0, "logprobs": None, "finish_reason": None}
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        last = {"text": "", "index": 0, "logprobs": None, "finish_reason": finish}
        await resp.write(b"data: " + orjson.dumps({**head, "choices": [last]}) + b"\n\n")
        if include_usage:
            tail = {**head, "choices": [], "usage": usage}
            await resp.write(b"data: " + orjson.dumps(tail) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    return resp


def _input_tokens(value: Any, instructions: Any) -> int:
    if isinstance(value, str):
        return max(1, len(value.split()) + (len(str(instructions).split()) if instructions else 0))
    messages = [item for item in value if isinstance(item, dict)]
    return count_input_tokens(messages, instructions)


def _function_tool(body: dict[str, Any]) -> _ToolCall | None:
    """The function the answer calls: the first function tool (or the one
    ``tool_choice`` names), unless ``tool_choice`` is ``"none"``."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or choice == "none":
        return None
    functions = [
        t
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]
    if not functions:
        return None
    wanted = choice.get("name") if isinstance(choice, dict) else None
    chosen = next((f for f in functions if f["name"] == wanted), functions[0])
    return _ToolCall(chosen["name"], chosen.get("parameters"))


async def responses(
    routes: _Routes, request: web.Request, gate: Gate = OPENAI_GATE
) -> web.StreamResponse:
    call = await routes.accept(request, render=gate.render, refuse=gate.refuse)
    if isinstance(call, web.StreamResponse):
        return call
    body: dict[str, Any] = call.body
    if not isinstance(body.get("model"), str):
        return openai_error(400, "Missing required parameter: 'model'.", param="model")
    value = body.get("input")
    if not isinstance(value, str | list):
        return openai_error(400, "Missing required parameter: 'input'.", param="input")
    try:
        cap = _int_param(body, "max_output_tokens")
    except ValueError as exc:
        return openai_error(400, f"Invalid '{exc}'.", param=str(exc), code="invalid_value")
    b = call.behaviour
    tool = _function_tool(body)
    if tool is not None:
        tool.given(b.tool_arguments)
        units, why = tool.fragments, None
    else:
        units, why, _ = _answer_tokens(b.answer or b.output_tokens, cap, ())
    input_tokens = _input_tokens(value, body.get("instructions"))
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": len(units),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + len(units),
    }
    response_id, item_id = _rand_id("resp_"), _rand_id("fc_" if tool else "msg_")
    text = "".join(units)
    part = {"type": "output_text", "text": text, "annotations": []}
    item: dict[str, Any] = {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    if tool is not None:
        item = {
            "type": "function_call",
            "id": item_id,
            "call_id": _rand_id("call_"),
            "name": tool.name,
            "arguments": text,
            "status": "completed",
        }
    final = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if why == "length" else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if why == "length" else None,
        "error": None,
        "model": body["model"],
        "instructions": body.get("instructions"),
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }
    extra = {"x-request-id": _request_id()}
    if body.get("stream") is not True:
        if b.latency_ms:
            await _sleep(b.latency_ms)
        return routes._json(call, final, extra)

    resp = routes._sse_response(call, extra)
    sequence = 0

    async def send(kind: str, **fields: Any) -> None:
        nonlocal sequence
        data = orjson.dumps({"type": kind, "sequence_number": sequence, **fields})
        sequence += 1
        await resp.write(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    # OpenAI announces the response at once; the first token comes after the TTFT.
    async with routes.open_stream(request, resp, b, wait_ttft=False):
        started = {**final, "status": "in_progress", "output": [], "usage": None}
        await send("response.created", response=started)
        await send("response.in_progress", response=started)
        if b.ttft_ms:
            await _sleep(b.ttft_ms)
        if tool is not None:
            empty_call = {**item, "status": "in_progress", "arguments": ""}
            await send("response.output_item.added", output_index=0, item=empty_call)
            where = {"item_id": item_id, "output_index": 0}
            for position, unit in enumerate(units):
                if position and b.inter_token_ms:
                    await _sleep(b.inter_token_ms)
                await send("response.function_call_arguments.delta", **where, delta=unit)
            await send("response.function_call_arguments.done", **where, arguments=text)
            await send("response.output_item.done", output_index=0, item=item)
            await send("response.completed", response=final)
            await resp.write_eof()
            return resp
        empty_item = {**item, "status": "in_progress", "content": []}
        await send("response.output_item.added", output_index=0, item=empty_item)
        empty_part = {**part, "text": ""}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        await send("response.content_part.added", **where, part=empty_part)
        for position, unit in enumerate(units):
            if position and b.inter_token_ms:
                await _sleep(b.inter_token_ms)
            await send("response.output_text.delta", **where, delta=unit)
        await send("response.output_text.done", **where, text=text)
        await send("response.content_part.done", **where, part=part)
        await send("response.output_item.done", output_index=0, item=item)
        done = "response.incomplete" if why == "length" else "response.completed"
        await send(done, response=final)
        await resp.write_eof()
    return resp


def endpoints(routes: _Routes) -> list[tuple[str, str, Any]]:
    """Both endpoints, also under the ``/openai`` prefix."""

    async def on_completions(request: web.Request) -> web.StreamResponse:
        return await completions(routes, request)

    async def on_responses(request: web.Request) -> web.StreamResponse:
        return await responses(routes, request)

    return [
        (method, prefix + path, handler)
        for prefix in ("", "/openai")
        for method, path, handler in (
            ("POST", "/v1/completions", on_completions),
            ("POST", "/v1/responses", on_responses),
        )
    ]
