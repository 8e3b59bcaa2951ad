"""Azure OpenAI's chat completions, as the mock serves them.

The mock resource's endpoint is ``{mock}/azure`` (what a real resource's
``https://NAME.openai.azure.com`` is), serving both surfaces:

* ``POST /azure/openai/deployments/{deployment}/chat/completions?api-version=V``
* ``POST /azure/openai/v1/chat/completions`` (deployment name in the body's ``model``;
  ``api-version`` optional: ``preview`` or ``latest``)
* ``embeddings`` and legacy ``completions`` on both surfaces, and ``responses`` on the
  v1 surface, answered as OpenAI answers them

As Azure does: a missing ``api-version`` is 404 ``Resource not found``, an
unknown one 400; a request without ``api-key`` (or ``Authorization: Bearer``
Entra token) is 401; a deployment other than the mock's models is 404
``DeploymentNotFound``. Errors use Azure's ``{"error": {"code", "message"}}``.
Answers carry content-filter annotations (``prompt_filter_results``,
``content_filter_results`` per choice) and streams open with a chunk whose
``choices`` is empty.

Content filtering is triggered deterministically by markers in a message's
text: ``[mock:content_filter]`` refuses the prompt (400, code
``content_filter``), ``[mock:filter_output]`` cuts the answer after its first
token with finish reason ``content_filter``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from proxy.mock_provider import openai_more
from proxy.mock_provider.server import (
    JSON_HEADERS,
    MODELS,
    Gate,
    _answer_tokens,
    _Call,
    _int_param,
    _joined,
    _openai_tool,
    _phrase,
    _rand_id,
    _sleep,
    _stop_list,
    _ToolCall,
    count_input_tokens,
    openai_error,
)

PREFIX = "/azure"
# GA and preview versions of the data-plane inference API.
API_VERSIONS = frozenset(
    {
        "2022-12-01",
        "2023-05-15",
        "2024-02-01",
        "2024-06-01",
        "2024-10-21",
        "2024-02-15-preview",
        "2024-05-01-preview",
        "2024-08-01-preview",
        "2024-09-01-preview",
        "2024-10-01-preview",
        "2024-12-01-preview",
        "2025-01-01-preview",
        "2025-03-01-preview",
        "2025-04-01-preview",
    }
)
V1_API_VERSIONS = frozenset({"preview", "latest"})
PROMPT_REFUSAL_MARKER = "[mock:content_filter]"
OUTPUT_FILTER_MARKER = "[mock:filter_output]"

_SAFE = {"filtered": False, "severity": "safe"}
_PROMPT_RESULTS = {
    "hate": _SAFE,
    "jailbreak": {"filtered": False, "detected": False},
    "self_harm": _SAFE,
    "sexual": _SAFE,
    "violence": _SAFE,
}
_OUTPUT_RESULTS = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_FILTERED_OUTPUT = {**_OUTPUT_RESULTS, "violence": {"filtered": True, "severity": "high"}}
_DEFAULT_MESSAGES = {
    401: (
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource."
    ),
    404: "Resource not found",
    429: (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
        "Please retry after 1 second."
    ),
}


def azure_error(
    status: int,
    message: str | None = None,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> web.Response:
    """An error in Azure's envelope (``code`` is a string, often the status itself)."""
    error = {
        "code": code or str(status),
        "message": message or _DEFAULT_MESSAGES.get(status) or f"{status} {_phrase(status)}",
        **(details or {}),
    }
    return web.Response(
        body=orjson.dumps({"error": error}),
        status=status,
        reason=_phrase(status),
        headers={**JSON_HEADERS, "apim-request-id": _rand_id(""), **(headers or {})},
    )


def _render(status: int, message: str | None, headers: Mapping[str, str]) -> web.Response:
    return azure_error(status, message, headers=headers)


def _texts(messages: list[Any]) -> str:
    parts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return "\n".join(parts)


async def _unauthenticated(request: web.Request) -> web.Response | None:
    """Azure's 401 for a request with neither an api-key nor a bearer token."""
    auth = request.headers.get("authorization", "")
    if request.headers.get("api-key") or (auth.lower().startswith("bearer ") and auth[7:].strip()):
        return None
    return azure_error(401)


class AzureChat:
    """The chat completions handler of the mock Azure resource."""

    def __init__(self, routes: Any) -> None:
        self.routes = routes

    async def deployment(self, request: web.Request) -> web.StreamResponse:
        problem = _version_problem(request, v1=False)
        if problem is not None:
            return problem
        return await self._chat(request, request.match_info["deployment"])

    async def v1(self, request: web.Request) -> web.StreamResponse:
        problem = _version_problem(request, v1=True)
        if problem is not None:
            return problem
        return await self._chat(request, None)

    async def _chat(self, request: web.Request, deployment: str | None) -> web.StreamResponse:
        routes = self.routes
        call = await routes.accept(request, render=_render, refuse=_unauthenticated)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        if deployment is None:
            deployment = body.get("model")
            if not isinstance(deployment, str) or not deployment:
                return _invalid("you must provide a model parameter", "model")
        missing = _deployment_missing(deployment)
        if missing is not None:
            return missing
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _invalid("'messages' is a required property", "messages")
        try:
            n = _int_param(body, "n") or 1
            cap = _int_param(body, "max_completion_tokens")
            if cap is None:
                cap = _int_param(body, "max_tokens")
        except ValueError as exc:
            return _invalid(f"{exc} must be an integer >= 1", str(exc))
        texts = _texts(messages)
        if PROMPT_REFUSAL_MARKER in texts:
            return azure_error(
                400,
                "The response was filtered due to the prompt triggering Azure OpenAI's content "
                "management policy. Please modify your prompt and retry.",
                code="content_filter",
                details={
                    "param": "prompt",
                    "status": 400,
                    "innererror": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_result": {
                            **_PROMPT_RESULTS,
                            "violence": {"filtered": True, "severity": "high"},
                        },
                    },
                },
            )

        b = call.behaviour
        tool = _openai_tool(body)
        filtered = False
        if tool is not None:
            units: tuple[str, ...] = tool.fragments
            finish = "tool_calls"
        else:
            units, why, _ = _answer_tokens(b.output_tokens, cap, _stop_list(body.get("stop")))
            finish = "length" if why == "length" else "stop"
            if OUTPUT_FILTER_MARKER in texts:
                units, finish, filtered = units[:1], "content_filter", True
        prompt_tokens = count_input_tokens(messages)
        usage = {
            "completion_tokens": n * len(units),
            "completion_tokens_details": {"reasoning_tokens": 0},
            "prompt_tokens": prompt_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "total_tokens": prompt_tokens + n * len(units),
        }
        answer = _Answer(
            id=_rand_id("chatcmpl-"),
            model=deployment,
            n=n,
            tool=tool,
            units=units,
            finish=finish,
            filtered=filtered,
            usage=usage,
        )
        if body.get("stream") is True:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(request, call, answer, include_usage)
        if b.latency_ms:
            await _sleep(b.latency_ms)
        return routes._json(
            call, answer.completion(lambda text: routes._pad(text, b.body_bytes)), _headers()
        )

    async def _stream(
        self, request: web.Request, call: _Call, answer: _Answer, include_usage: bool
    ) -> web.StreamResponse:
        routes = self.routes
        b = call.behaviour
        resp = routes._sse_response(call, _headers())
        async with routes.open_stream(request, resp, b):
            # Azure reports the prompt's filter results first, in a chunk of its own.
            await resp.write(
                _event(
                    {
                        "choices": [],
                        "created": 0,
                        "id": "",
                        "model": "",
                        "object": "",
                        "prompt_filter_results": answer.prompt_filter_results(),
                    }
                )
            )
            for i in range(answer.n):
                await resp.write(_event(answer.chunk(i, answer.first_delta(i), {})))
            stall = b.stall_after_tokens
            for position, unit in enumerate(answer.units):
                if stall is not None and position >= stall:
                    break
                if position and b.inter_token_ms:
                    await _sleep(b.inter_token_ms)
                delta: dict[str, Any] = (
                    {"tool_calls": [{"index": 0, "function": {"arguments": unit}}]}
                    if answer.tool is not None
                    else {"content": unit}
                )
                results = {} if answer.tool is not None else _OUTPUT_RESULTS
                for i in range(answer.n):
                    await resp.write(_event(answer.chunk(i, delta, results)))
                if position == 0 and b.malformed == "sse":
                    await resp.write(b'data: {"id": this is not json\n\n')
            if stall is not None:
                await routes._hang(request)
                return resp
            if not answer.units and b.malformed == "sse":
                await resp.write(b'data: {"id": this is not json\n\n')
            final = _FILTERED_OUTPUT if answer.filtered else {}
            for i in range(answer.n):
                await resp.write(_event(answer.chunk(i, {}, final, answer.finish)))
            if include_usage:
                await resp.write(
                    _event({**answer.envelope(), "choices": [], "usage": answer.usage})
                )
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        return resp


class _Answer:
    """One deterministic answer, rendered whole or as chunks."""

    def __init__(
        self,
        *,
        id: str,
        model: str,
        n: int,
        tool: _ToolCall | None,
        units: tuple[str, ...],
        finish: str,
        filtered: bool,
        usage: dict[str, Any],
    ) -> None:
        self.id = id
        self.model = model
        self.n = n
        self.tool = tool
        self.units = units
        self.finish = finish
        self.filtered = filtered
        self.usage = usage
        self.created = int(time.time())
        self.call_ids = [_rand_id("call_") for _ in range(n)] if tool is not None else []

    def envelope(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "object": "chat.completion.chunk",
            "system_fingerprint": "fp_mock",
        }

    @staticmethod
    def prompt_filter_results() -> list[dict[str, Any]]:
        return [{"prompt_index": 0, "content_filter_results": _PROMPT_RESULTS}]

    def first_delta(self, index: int) -> dict[str, Any]:
        if self.tool is None:
            return {"content": "", "refusal": None, "role": "assistant"}
        return {
            "content": None,
            "refusal": None,
            "role": "assistant",
            "tool_calls": [
                {
                    "index": 0,
                    "id": self.call_ids[index],
                    "type": "function",
                    "function": {"name": self.tool.name, "arguments": ""},
                }
            ],
        }

    def chunk(
        self,
        index: int,
        delta: dict[str, Any],
        results: dict[str, Any],
        finish: str | None = None,
    ) -> dict[str, Any]:
        choice = {
            "content_filter_results": results,
            "delta": delta,
            "finish_reason": finish,
            "index": index,
            "logprobs": None,
        }
        return {**self.envelope(), "choices": [choice]}

    def completion(self, pad: Callable[[str], str]) -> dict[str, Any]:
        choices = []
        for i in range(self.n):
            if self.tool is not None:
                message: dict[str, Any] = {
                    "content": None,
                    "refusal": None,
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "function": {
                                "arguments": self.tool.arguments_json,
                                "name": self.tool.name,
                            },
                            "id": self.call_ids[i],
                            "type": "function",
                        }
                    ],
                }
                results: dict[str, Any] = {}
            else:
                text = _joined(self.units) if self.filtered else pad(_joined(self.units))
                message = {"content": text, "refusal": None, "role": "assistant"}
                results = _FILTERED_OUTPUT if self.filtered else _OUTPUT_RESULTS
            choices.append(
                {
                    "content_filter_results": results,
                    "finish_reason": self.finish,
                    "index": i,
                    "logprobs": None,
                    "message": message,
                }
            )
        return {
            "choices": choices,
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "object": "chat.completion",
            "prompt_filter_results": self.prompt_filter_results(),
            "system_fingerprint": "fp_mock",
            "usage": self.usage,
        }


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _headers() -> dict[str, str]:
    return {"apim-request-id": _rand_id(""), "x-request-id": _rand_id("")}


def _invalid(message: str, param: str | None) -> web.Response:
    # Request validation errors keep OpenAI's detailed shape on Azure.
    return openai_error(400, message, param=param)


def _version_problem(request: web.Request, *, v1: bool) -> web.Response | None:
    """Azure's answer to a missing or unknown ``api-version`` on either surface."""
    version = request.query.get("api-version")
    if v1:
        known, required = V1_API_VERSIONS, False
    else:
        known, required = API_VERSIONS, True
    if version is None:
        return azure_error(404, "Resource not found") if required else None
    if version not in known:
        return azure_error(400, "API version not supported", code="BadRequest")
    return None


def _deployment_missing(deployment: Any) -> web.Response | None:
    if deployment in MODELS:
        return None
    return azure_error(
        404,
        "The API deployment for this resource does not exist. If you created the "
        "deployment within the last 5 minutes, please wait a moment and try again.",
        code="DeploymentNotFound",
    )


def _named_deployment(raw: bytes) -> str | None:
    """The v1 surface's deployment: the body's ``model`` (a bad body is the
    handler's to refuse)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def _shared(handler: Callable[..., Any], *, v1: bool) -> Callable[[web.Request], Any]:
    """One of OpenAI's handlers behind Azure's addressing, versions and auth."""

    async def serve(request: web.Request) -> web.StreamResponse:
        problem = _version_problem(request, v1=v1)
        if problem is not None:
            return problem
        if v1:
            deployment = _named_deployment(await request.read())
        else:
            deployment = request.match_info["deployment"]
        if deployment is not None:
            missing = _deployment_missing(deployment)
            if missing is not None:
                return missing
        return await handler(request, Gate(_render, _unauthenticated, deployment))

    return serve


def endpoints(routes: Any) -> list[tuple[str, str, Any]]:
    """The mock Azure resource's paths."""
    chat = AzureChat(routes)

    async def completions(request: web.Request, gate: Gate) -> web.StreamResponse:
        return await openai_more.completions(routes, request, gate)

    async def responses(request: web.Request, gate: Gate) -> web.StreamResponse:
        return await openai_more.responses(routes, request, gate)

    deployment = f"{PREFIX}/openai/deployments/{{deployment}}"
    return [
        ("POST", f"{deployment}/chat/completions", chat.deployment),
        ("POST", f"{PREFIX}/openai/v1/chat/completions", chat.v1),
        ("POST", f"{deployment}/embeddings", _shared(routes.embeddings, v1=False)),
        ("POST", f"{PREFIX}/openai/v1/embeddings", _shared(routes.embeddings, v1=True)),
        ("POST", f"{deployment}/completions", _shared(completions, v1=False)),
        ("POST", f"{PREFIX}/openai/v1/completions", _shared(completions, v1=True)),
        ("POST", f"{PREFIX}/openai/v1/responses", _shared(responses, v1=True)),
    ]
