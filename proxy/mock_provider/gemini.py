"""Google's Generative Language API (Gemini), as the mock serves it.

Paths, under both ``/v1beta`` and ``/v1`` (the mock's base URL is
``{mock}/v1beta``, what ``https://generativelanguage.googleapis.com/v1beta``
is for real):

* ``POST /models/{model}:generateContent``
* ``POST /models/{model}:streamGenerateContent`` (``?alt=sse``: server-sent
  events, each ``data:`` a ``GenerateContentResponse``, CRLF-framed; without
  ``alt=sse``: one JSON array of them, written as it is produced)
* ``POST /models/{model}:countTokens``
* ``POST /models/{model}:embedContent`` and ``:batchEmbedContents``

As Google does: the key travels in ``x-goog-api-key`` (or ``?key=``), a
request without one is 403 ``PERMISSION_DENIED``; request bodies are checked
field by field like a protobuf JSON parser (an unknown field, such as a JSON
schema keyword Gemini lacks, is 400 ``Invalid JSON payload received. Unknown
name ...``), and errors use ``{"error": {"code", "message", "status"}}``.

Deterministic content filtering: a prompt containing ``[mock:content_filter]``
is blocked (``promptFeedback.blockReason: SAFETY``, no candidates); one
containing ``[mock:filter_output]`` is cut after its first token with
``finishReason: SAFETY``. With ``responseMimeType: application/json`` the answer
is a JSON value fitting ``responseSchema`` (one token).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from proxy.mock_provider.server import (
    DEFAULT_EMBEDDING_DIMS,
    JSON_HEADERS,
    MAX_EMBEDDING_DIMS,
    _answer_tokens,
    _Call,
    _embedding,
    _embedding_values,
    _joined,
    _phrase,
    _rand_id,
    _retry_after_value,
    _sleep,
    _tokens,
    _ToolCall,
    structured_units,
)

VERSIONS = ("/v1beta", "/v1")
PROMPT_BLOCK_MARKER = "[mock:content_filter]"
OUTPUT_FILTER_MARKER = "[mock:filter_output]"
MAX_CANDIDATES = 8
MAX_STOP_SEQUENCES = 5
MAX_BATCH_EMBEDDINGS = 100
# What Gemini 2.5+ attaches to a function call part: opaque, base64.
THOUGHT_SIGNATURE = base64.b64encode(b"mock-thought-signature").decode()

# google.rpc.Code names by HTTP status, as Google's APIs pair them.
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Each message's fields (JSON names) with their snake_case proto names, so
# errors name paths as Google's do ("tools[0].function_declarations[0]").
_REQUEST_FIELDS = {
    "contents",
    "tools",
    "toolConfig",
    "safetySettings",
    "systemInstruction",
    "generationConfig",
    "cachedContent",
}
_CONTENT_FIELDS = {"role", "parts"}
_PART_DATA = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
}
_PART_FIELDS = _PART_DATA | {"thought", "thoughtSignature", "videoMetadata", "mediaResolution"}
_GENERATION_FIELDS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "mediaResolution",
}
_TOOL_FIELDS = {
    "functionDeclarations",
    "googleSearch",
    "googleSearchRetrieval",
    "codeExecution",
    "urlContext",
    "computerUse",
    "fileSearch",
    "googleMaps",
}
_DECLARATION_FIELDS = {
    "name",
    "description",
    "parameters",
    "parametersJsonSchema",
    "response",
    "responseJsonSchema",
    "behavior",
}
_SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
_SCHEMA_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}
_SCHEMA_TYPES |= {"NULL"}
_MODES = {"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"}
_HARM_CATEGORIES = {
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
}
_THRESHOLDS = {
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
    "BLOCK_LOW_AND_ABOVE",
    "BLOCK_MEDIUM_AND_ABOVE",
    "BLOCK_ONLY_HIGH",
    "BLOCK_NONE",
    "OFF",
}
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,63}$")
_CAMEL = re.compile(r"(?<!^)([A-Z])")


def google_error(
    status: int, message: str | None = None, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error in Google's ``{"error": {"code", "message", "status"}}`` envelope."""
    name = STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    payload = {
        "error": {
            "code": status,
            "message": message or f"Mock provider error: {status} {_phrase(status)}.",
            "status": name,
        }
    }
    return web.Response(
        body=orjson.dumps(payload),
        status=status,
        reason=_phrase(status),
        headers={**JSON_HEADERS, **(headers or {})},
    )


def _render(status: int, message: str | None, headers: Mapping[str, str]) -> web.Response:
    return google_error(status, message, headers=headers)


class Invalid(Exception):
    """A request Google's API would refuse with 400 INVALID_ARGUMENT."""


def _snake(name: str) -> str:
    return _CAMEL.sub(r"_\1", name).lower()


def _unknown(obj: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            at = f" at '{where}'" if where else ""
            raise Invalid(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(
            f"Invalid JSON payload received. Expected an object at '{where}' "
            f"(got {orjson.dumps(value).decode()[:40]})."
        )
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise Invalid(f"Invalid JSON payload received. Expected a list at '{where}'.")
    return value


def _bytes(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise Invalid(f"Invalid value at '{where}' (TYPE_BYTES), expected a base64 string")
    try:
        # Google's JSON parser takes the standard and the URL-safe alphabet.
        base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{value[:40]}\""
        ) from None


def _check_content(content: Any, where: str, *, system: bool = False) -> None:
    content = _object(content, where)
    _unknown(content, _CONTENT_FIELDS, where)
    role = content.get("role")
    if not system and role is not None and role not in ("user", "model"):
        raise Invalid("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise Invalid(f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    for index, part in enumerate(parts):
        _check_part(part, f"{where}.parts[{index}]")


def _check_part(part: Any, where: str) -> None:
    part = _object(part, where)
    _unknown(part, _PART_FIELDS, where)
    data = [key for key in part if key in _PART_DATA]
    if len(data) != 1:
        raise Invalid(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have "
            "one initialized field"
        )
    if "thoughtSignature" in part:
        _bytes(part["thoughtSignature"], f"{where}.thought_signature")
    kind = data[0]
    value = part[kind]
    inner = f"{where}.{_snake(kind)}"
    if kind == "text":
        if not isinstance(value, str):
            raise Invalid(f"Invalid value at '{inner}' (TYPE_STRING)")
    elif kind == "inlineData":
        blob = _object(value, inner)
        _unknown(blob, {"mimeType", "data"}, inner)
        if not isinstance(blob.get("mimeType"), str) or not blob["mimeType"]:
            raise Invalid(f"* GenerateContentRequest.{inner}.mime_type: required field missing")
        _bytes(blob.get("data"), f"{inner}.data")
    elif kind == "fileData":
        file = _object(value, inner)
        _unknown(file, {"mimeType", "fileUri"}, inner)
        if not isinstance(file.get("fileUri"), str) or not file["fileUri"]:
            raise Invalid(f"* GenerateContentRequest.{inner}.file_uri: required field missing")
    elif kind == "functionCall":
        call = _object(value, inner)
        _unknown(call, {"id", "name", "args"}, inner)
        if not isinstance(call.get("name"), str) or not call["name"]:
            raise Invalid(f"* GenerateContentRequest.{inner}.name: Name cannot be empty.")
        if "args" in call:
            _object(call["args"], f"{inner}.args")
    elif kind == "functionResponse":
        response = _object(value, inner)
        _unknown(response, {"id", "name", "response", "willContinue", "scheduling"}, inner)
        if not isinstance(response.get("name"), str) or not response["name"]:
            raise Invalid(f"* GenerateContentRequest.{inner}.name: Name cannot be empty.")
        _object(response.get("response"), f"{inner}.response")


def _check_schema(schema: Any, where: str, depth: int = 0) -> None:
    schema = _object(schema, where)
    _unknown(schema, _SCHEMA_FIELDS, where)
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _SCHEMA_TYPES):
        raise Invalid(
            f"Invalid value at '{where}.type' (type.googleapis.com/google.ai.generativelanguage"
            f".v1beta.Type), {orjson.dumps(kind).decode()}"
        )
    enum = schema.get("enum")
    if enum is not None and not all(isinstance(v, str) for v in _list(enum, f"{where}.enum")):
        raise Invalid(f"Invalid value at '{where}.enum' (TYPE_STRING)")
    properties = schema.get("properties")
    if properties is not None:
        for name, value in _object(properties, f"{where}.properties").items():
            _check_schema(value, f"{where}.properties[{name}].value", depth + 1)
    for index, name in enumerate(schema.get("required") or []):
        if not isinstance(properties, dict) or name not in properties:
            raise Invalid(
                f"* GenerateContentRequest.{where}.required[{index}]: property is not defined"
            )
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items", depth + 1)
    for index, option in enumerate(schema.get("anyOf") or []):
        _check_schema(option, f"{where}.any_of[{index}]", depth + 1)


def _check_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    for t, tool in enumerate(_list(body.get("tools"), "tools")):
        tool = _object(tool, f"tools[{t}]")
        _unknown(tool, _TOOL_FIELDS, f"tools[{t}]")
        for d, declaration in enumerate(tool.get("functionDeclarations") or []):
            where = f"tools[{t}].function_declarations[{d}]"
            declaration = _object(declaration, where)
            _unknown(declaration, _DECLARATION_FIELDS, where)
            name = declaration.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                raise Invalid(
                    f"* GenerateContentRequest.{where}.name: Invalid function name. Must start "
                    "with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), "
                    "underscores (_), dots (.), colons (:), or dashes (-), with a maximum "
                    "length of 64."
                )
            if "parameters" in declaration:
                parameters = declaration["parameters"]
                _check_schema(parameters, f"{where}.parameters")
                if str(parameters.get("type", "")).upper() == "OBJECT" and not parameters.get(
                    "properties"
                ):
                    raise Invalid(
                        f"* GenerateContentRequest.{where}.parameters.properties: should be "
                        "non-empty for OBJECT type"
                    )
            declarations.append(declaration)
    return declarations


def _check_tool_config(body: dict[str, Any], names: set[str]) -> dict[str, Any]:
    config = _object(body.get("toolConfig"), "tool_config")
    _unknown(config, {"functionCallingConfig", "retrievalConfig"}, "tool_config")
    calling = _object(
        config.get("functionCallingConfig", {}), "tool_config.function_calling_config"
    )
    where = "tool_config.function_calling_config"
    _unknown(calling, {"mode", "allowedFunctionNames"}, where)
    mode = calling.get("mode", "AUTO")
    if mode not in _MODES:
        raise Invalid(
            f"Invalid value at '{where}.mode' (type.googleapis.com/google.ai.generativelanguage"
            f".v1beta.FunctionCallingConfig.Mode), {orjson.dumps(mode).decode()}"
        )
    allowed = calling.get("allowedFunctionNames")
    if allowed:
        if mode not in ("ANY", "VALIDATED"):
            raise Invalid(
                f"* GenerateContentRequest.{where}.allowed_function_names: allowed_function_names "
                "may only be set when mode is ANY or VALIDATED."
            )
        for name in allowed:
            if name not in names:
                raise Invalid(
                    f"* GenerateContentRequest.{where}.allowed_function_names: function "
                    f"'{name}' is not declared."
                )
    return calling


def _check_generation(config: Any) -> dict[str, Any]:
    config = _object(config, "generation_config")
    _unknown(config, _GENERATION_FIELDS, "generation_config")
    count = config.get("candidateCount", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_CANDIDATES:
        raise Invalid(
            "* GenerateContentRequest.generation_config.candidate_count: Only 1 to "
            f"{MAX_CANDIDATES} candidates are supported."
        )
    stops = config.get("stopSequences")
    if stops is not None:
        stops = _list(stops, "generation_config.stop_sequences")
        if len(stops) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) for s in stops):
            raise Invalid(
                "* GenerateContentRequest.generation_config.stop_sequences: at most "
                f"{MAX_STOP_SEQUENCES} stop sequences are supported."
            )
    limit = config.get("maxOutputTokens")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise Invalid(
            "* GenerateContentRequest.generation_config.max_output_tokens: must be positive."
        )
    if "responseSchema" in config:
        _check_schema(config["responseSchema"], "generation_config.response_schema")
        if config.get("responseMimeType") != "application/json":
            raise Invalid(
                "* GenerateContentRequest.generation_config.response_mime_type: must be "
                "application/json when response_schema is set."
            )
    return config


def check_request(body: dict[str, Any]) -> None:
    """Refuse, as Google does, what a ``GenerateContentRequest`` may not hold."""
    _unknown(body, _REQUEST_FIELDS, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise Invalid("* GenerateContentRequest.contents: contents is not specified")
    for index, content in enumerate(contents):
        _check_content(content, f"contents[{index}]")
    if "systemInstruction" in body:
        _check_content(body["systemInstruction"], "system_instruction", system=True)
    names = {d["name"] for d in _check_tools(body)} if "tools" in body else set()
    if "toolConfig" in body:
        _check_tool_config(body, names)
    for index, setting in enumerate(body.get("safetySettings") or []):
        where = f"safety_settings[{index}]"
        setting = _object(setting, where)
        _unknown(setting, {"category", "threshold"}, where)
        if setting.get("category") not in _HARM_CATEGORIES:
            raise Invalid(f"Invalid value at '{where}.category' ({setting.get('category')!r})")
        if setting.get("threshold") not in _THRESHOLDS:
            raise Invalid(f"Invalid value at '{where}.threshold' ({setting.get('threshold')!r})")
    if "generationConfig" in body:
        _check_generation(body["generationConfig"])


# --------------------------------------------------------------------------------------------
# The answer
# --------------------------------------------------------------------------------------------


def _texts(content: Any) -> list[str]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [
        p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)
    ]


def count_tokens(contents: list[Any], system: Any = None) -> int:
    """The mock's token model on Gemini contents: words of every text part,
    3 per content, at least 1."""
    total = sum(len(t.split()) for t in _texts(system)) if system else 0
    for content in contents:
        total += 3 + sum(len(t.split()) for t in _texts(content))
    return max(total, 1)


def _lowered(schema: Any) -> Any:
    """A Gemini schema with JSON Schema's lower-case type names, for the placeholder maker."""
    if isinstance(schema, list):
        return [_lowered(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _lowered(value) for key, value in schema.items() if key != "properties"}
    if isinstance(schema.get("type"), str):
        out["type"] = schema["type"].lower()
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: _lowered(v) for k, v in schema["properties"].items()}
    return out


def _tool(body: dict[str, Any]) -> _ToolCall | None:
    """The call the mock makes: the first allowed declaration, unless calling is
    off or the last turn answers a call."""
    declarations = [
        d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations") or []
    ]
    if not declarations:
        return None
    last = body["contents"][-1]
    if last.get("role", "user") != "user" or any(
        "functionResponse" in part for part in last["parts"]
    ):
        return None
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if calling.get("mode") == "NONE":
        return None
    allowed = calling.get("allowedFunctionNames") or []
    chosen = next((d for d in declarations if d["name"] in allowed), declarations[0])
    return _ToolCall(chosen["name"], _lowered(chosen.get("parameters")))


class _Answer:
    """What the mock answers one ``GenerateContentRequest`` with."""

    def __init__(self, body: dict[str, Any], output_tokens: int, model: str) -> None:
        config = body.get("generationConfig") or {}
        self.model = model
        self.response_id = _rand_id("")[:22]
        self.candidates = config.get("candidateCount", 1)
        self.prompt_tokens = count_tokens(body["contents"], body.get("systemInstruction"))
        prompt = "\n".join(
            t for c in [*body["contents"], body.get("systemInstruction")] for t in _texts(c)
        )
        self.blocked = PROMPT_BLOCK_MARKER in prompt
        self.tool = _tool(body)
        self.finish = "STOP"
        if self.tool is not None:
            self.units: tuple[str, ...] = ()
            self.tokens = len(self.tool.fragments)
            return
        if config.get("responseMimeType") == "application/json":
            schema = config.get("responseSchema")
            self.units = structured_units(_lowered(schema) if schema else None)
        else:
            units, why, _ = _answer_tokens(
                output_tokens, config.get("maxOutputTokens"), config.get("stopSequences") or []
            )
            self.units = units
            if why == "length":
                self.finish = "MAX_TOKENS"
        if OUTPUT_FILTER_MARKER in prompt:
            self.units = self.units[:1] or _tokens(1)
            self.finish = "SAFETY"
        self.tokens = len(self.units)

    def usage(self, sent: int | None = None) -> dict[str, Any]:
        """``usageMetadata`` once ``sent`` tokens per candidate are out (all by default)."""
        prompt = self.prompt_tokens
        usage: dict[str, Any] = {"promptTokenCount": prompt}
        if not self.blocked:
            output = self.candidates * (self.tokens if sent is None else sent)
            usage["candidatesTokenCount"] = output
            prompt += output
        usage["totalTokenCount"] = prompt
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": self.prompt_tokens}]
        return usage

    def envelope(self, candidates: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"candidates": candidates} if candidates else {}
        if self.blocked:
            payload["promptFeedback"] = {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                ],
            }
        payload["usageMetadata"] = usage
        payload["modelVersion"] = self.model
        payload["responseId"] = self.response_id
        return payload

    def call_parts(self) -> list[dict[str, Any]]:
        assert self.tool is not None
        return [
            {
                "functionCall": {"name": self.tool.name, "args": self.tool.arguments},
                "thoughtSignature": THOUGHT_SIGNATURE,
            }
        ]

    def candidate(
        self, index: int, parts: list[dict[str, Any]], finish: str | None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
            if finish == "SAFETY":
                candidate["safetyRatings"] = [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                ]
        candidate["index"] = index
        return candidate

    def whole(self, text: str) -> dict[str, Any]:
        if self.blocked:
            return self.envelope([], self.usage())
        parts = self.call_parts() if self.tool is not None else [{"text": text}]
        candidates = [self.candidate(i, parts, self.finish) for i in range(self.candidates)]
        return self.envelope(candidates, self.usage())


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


async def _unauthenticated(request: web.Request) -> web.Response | None:
    """Google's 403 for a request with no API key (header or ``key`` parameter)."""
    if request.headers.get("x-goog-api-key") or request.query.get("key"):
        return None
    return google_error(
        403,
        "Method doesn't allow unregistered callers (callers without established "
        "identity). Please use API Key or other form of API consumer identity to call "
        "this API.",
    )


class GeminiAPI:
    """The mock Generative Language API's handlers."""

    def __init__(self, routes: Any) -> None:
        self.routes = routes

    async def _start(self, request: web.Request) -> _Call | web.StreamResponse:
        return await self.routes.accept(request, render=_render, refuse=_unauthenticated)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, stream=False)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, stream=True)

    async def _generate(self, request: web.Request, *, stream: bool) -> web.StreamResponse:
        call = await self._start(request)
        if isinstance(call, web.StreamResponse):
            return call
        try:
            check_request(call.body)
        except Invalid as exc:
            return google_error(400, str(exc))
        b = call.behaviour
        answer = _Answer(call.body, b.output_tokens, request.match_info["model"])
        if stream:
            return await self._stream(request, call, answer, sse=request.query.get("alt") == "sse")
        if b.latency_ms:
            await _sleep(b.latency_ms)
        text = self.routes._pad(_joined(answer.units), b.body_bytes)
        return self.routes._json(call, answer.whole(text), {})

    async def _stream(
        self, request: web.Request, call: _Call, answer: _Answer, *, sse: bool
    ) -> web.StreamResponse:
        routes = self.routes
        b = call.behaviour
        if sse:
            resp = routes._sse_response(call, {})
        else:
            headers = dict(JSON_HEADERS)
            if b.retry_after is not None:
                headers["Retry-After"] = _retry_after_value(b.retry_after)
            resp = web.StreamResponse(headers=headers)
        first = True

        async def send(payload: dict[str, Any] | bytes) -> None:
            nonlocal first
            data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
            if sse:
                await resp.write(b"data: " + data + b"\r\n\r\n")
            else:
                await resp.write((b"[" if first else b",\r\n") + data)
            first = False

        async with routes.open_stream(request, resp, b):
            stall = b.stall_after_tokens
            if answer.blocked:
                await send(answer.envelope([], answer.usage()))
            elif answer.tool is not None:
                if stall is not None:
                    await routes._hang(request)
                    return resp
                candidates = [
                    answer.candidate(i, answer.call_parts(), answer.finish)
                    for i in range(answer.candidates)
                ]
                await send(answer.envelope(candidates, answer.usage()))
            else:
                await self._stream_text(request, answer, b, send)
                if stall is not None:
                    await routes._hang(request)
                    return resp
            if not sse:
                await resp.write(b"]" if not first else b"[]")
            await resp.write_eof()
        return resp

    async def _stream_text(self, request: web.Request, answer: _Answer, b: Any, send: Any) -> None:
        units = answer.units or ("",)
        stall = b.stall_after_tokens
        last = len(units) - 1
        for position, unit in enumerate(units):
            if stall is not None and position >= stall:
                return
            if position and b.inter_token_ms:
                await _sleep(b.inter_token_ms)
            finish = answer.finish if position == last else None
            candidates = [
                answer.candidate(i, [{"text": unit}], finish) for i in range(answer.candidates)
            ]
            sent = position + 1 if answer.units else 0
            await send(answer.envelope(candidates, answer.usage(sent)))
            if position == 0 and b.malformed == "sse":
                await send(b'{"candidates": this is not json')

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        call = await self._start(request)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        try:
            _unknown(body, {"contents", "generateContentRequest"}, "")
            inner = body.get("generateContentRequest")
            if inner is not None:
                inner = _object(inner, "generate_content_request")
                _unknown(inner, _REQUEST_FIELDS | {"model"}, "generate_content_request")
                check_request({k: v for k, v in inner.items() if k != "model"})
                contents, system = inner["contents"], inner.get("systemInstruction")
            else:
                contents, system = body.get("contents"), None
                if not isinstance(contents, list) or not contents:
                    raise Invalid("* CountTokensRequest.contents: contents is not specified")
                for index, content in enumerate(contents):
                    _check_content(content, f"contents[{index}]")
        except Invalid as exc:
            return google_error(400, str(exc))
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        tokens = count_tokens(contents, system)
        return self.routes._json(
            call,
            {
                "totalTokens": tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
            },
            {},
        )

    async def embed(self, request: web.Request) -> web.StreamResponse:
        call = await self._start(request)
        if isinstance(call, web.StreamResponse):
            return call
        try:
            values = _embed_one(call.body, request.match_info["model"], "")
        except Invalid as exc:
            return google_error(400, str(exc))
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        return self.routes._json(call, {"embedding": {"values": values}}, {})

    async def batch_embed(self, request: web.Request) -> web.StreamResponse:
        call = await self._start(request)
        if isinstance(call, web.StreamResponse):
            return call
        body: dict[str, Any] = call.body
        model = request.match_info["model"]
        try:
            _unknown(body, {"requests"}, "")
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                raise Invalid("* BatchEmbedContentsRequest.requests: requests is not specified")
            if len(requests) > MAX_BATCH_EMBEDDINGS:
                raise Invalid(
                    "* BatchEmbedContentsRequest.requests: at most "
                    f"{MAX_BATCH_EMBEDDINGS} requests can be in one batch."
                )
            embeddings = []
            for index, item in enumerate(requests):
                where = f"requests[{index}]"
                item = _object(item, where)
                if item.get("model") != f"models/{model}":
                    raise Invalid(
                        f"* BatchEmbedContentsRequest.{where}.model: the model of every request "
                        f"must be the batch's (models/{model})."
                    )
                embeddings.append({"values": _embed_one(item, model, where)})
        except Invalid as exc:
            return google_error(400, str(exc))
        if call.behaviour.latency_ms:
            await _sleep(call.behaviour.latency_ms)
        return self.routes._json(call, {"embeddings": embeddings}, {})


def _embed_one(item: dict[str, Any], model: str, where: str) -> list[float]:
    prefix = f"{where}." if where else ""
    _unknown(item, {"model", "content", "taskType", "title", "outputDimensionality"}, where)
    content = item.get("content")
    if content is None:
        raise Invalid(f"* EmbedContentRequest.{prefix}content: content is not specified")
    _check_content(content, f"{prefix}content", system=True)
    dims = item.get("outputDimensionality", DEFAULT_EMBEDDING_DIMS)
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= MAX_EMBEDDING_DIMS:
        raise Invalid(
            f"* EmbedContentRequest.{prefix}output_dimensionality: must be a positive integer."
        )
    text = " ".join(_texts(content))
    return _embedding_values(_embedding(text, dims))


def endpoints(routes: Any) -> list[tuple[str, str, Any]]:
    """The mock Generative Language API's paths, in every API version."""
    api = GeminiAPI(routes)
    methods = (
        ("generateContent", api.generate),
        ("streamGenerateContent", api.stream),
        ("countTokens", api.count_tokens),
        ("embedContent", api.embed),
        ("batchEmbedContents", api.batch_embed),
    )
    return [
        ("POST", f"{version}/models/{{model}}:{name}", handler)
        for version in VERSIONS
        for name, handler in methods
    ]


__all__ = ["check_request", "count_tokens", "endpoints", "google_error"]
