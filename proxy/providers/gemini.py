"""Google Gemini's wire format: the Generative Language API (``v1beta``).

A canonical chat request becomes a ``GenerateContentRequest`` sent to
``{base_url}/models/{model}:generateContent`` (streamed:
``:streamGenerateContent?alt=sse``) with the key in ``x-goog-api-key``:

* system and developer messages -> ``systemInstruction``; ``user`` /
  ``assistant`` -> ``contents`` with roles ``user`` / ``model`` (consecutive
  turns of one role merged, as Gemini reads one turn per speaker);
* text, images (``data:`` URLs inline, ``http(s)``/``gs`` URLs as
  ``fileData``), audio and files -> ``parts``;
* tools -> ``functionDeclarations`` with their JSON schemas rewritten into the
  OpenAPI subset Gemini accepts; ``tool_choice`` -> ``toolConfig``;
  assistant ``tool_calls`` -> ``functionCall`` parts, tool results ->
  ``functionResponse`` parts named after the call they answer;
* sampling and output settings -> ``generationConfig``.

Answers come back as canonical completions or chunks. Gemini gives function
calls no ids, so each gets a deterministic one derived from the answer.
"""

from __future__ import annotations

import array
import base64
import hashlib
import mimetypes
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from proxy.errors import GatewayError, bad_request
from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.canonical import (
    ChunkFactory,
    JSONEventDecoder,
    completion,
    invalid_answer,
    parse_data_url,
    text_of,
    tool_call,
    tool_call_start,
    unsupported,
)
from proxy.usage import Usage

KIND = "gemini"

# A model turn replayed without the signature Gemini attached to its first
# function call would be refused by models that validate signatures (Gemini 3);
# this documented placeholder asks the API to skip that check, since the
# canonical format has nowhere to carry the original.
SKIP_THOUGHT_SIGNATURE = "skip_thought_signature_validator"

HARM_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}

# OpenAI's reasoning efforts as Gemini thinking budgets (Google's own
# OpenAI-compatible endpoint uses the same figures).
THINKING_BUDGETS: dict[str, int] = {
    "none": 0,
    "minimal": 1024,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
}

AUDIO_TYPES: dict[str, str] = {"wav": "audio/wav", "mp3": "audio/mp3"}

# Canonical fields not listed here or translated below (user, metadata, store,
# parallel_tool_calls, stream_options...) are bookkeeping the gateway handles
# itself or hints Gemini has no use for, and are left out.
_UNSUPPORTED = {
    "logit_bias": "logit_bias",
    "audio": "audio output",
    "prediction": "predicted outputs",
    "web_search_options": "web_search_options",
    "functions": "the legacy 'functions' parameter (use 'tools')",
    "function_call": "the legacy 'function_call' parameter (use 'tool_choice')",
}

# Schema keywords that mean the same in JSON Schema and Gemini's Schema and are
# copied as they are; everything else is translated below or dropped.
_SCHEMA_COPIED = (
    "title",
    "description",
    "pattern",
    "default",
    "example",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "propertyOrdering",
)
_SCHEMA_FORMATS = {
    "STRING": {"enum", "date-time"},
    "NUMBER": {"float", "double"},
    "INTEGER": {"int32", "int64"},
}
_SCHEMA_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}
_MAX_SCHEMA_DEPTH = 32


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def model_path(model: str) -> str:
    """The resource name of a model: ``models/x``, or a ``tunedModels/x`` kept as it is."""
    return model if "/" in model else f"models/{model}"


def _url(target: Target, method: str) -> str:
    return f"{target.base_url.rstrip('/')}/{model_path(target.model)}:{method}"


def generate_content_request(
    payload: Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A canonical chat request as a ``GenerateContentRequest`` body."""
    for key, what in _UNSUPPORTED.items():
        if payload.get(key) is not None:
            raise unsupported(what, KIND, key)
    modalities = payload.get("modalities")
    if isinstance(modalities, list) and any(m != "text" for m in modalities):
        raise unsupported("output modalities other than text", KIND, "modalities")

    system, contents = _contents(payload.get("messages") or [])
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = payload.get("tools")
    choice = payload.get("tool_choice")
    if tools:
        declarations = [_declaration(tool) for tool in tools]
        tool_config, declarations = _tool_config(choice, declarations)
        body["tools"] = [{"functionDeclarations": declarations}]
        if tool_config is not None:
            body["toolConfig"] = tool_config
    threshold = (options or {}).get("safety_threshold")
    if threshold:
        body["safetySettings"] = [
            {"category": category, "threshold": threshold} for category in HARM_CATEGORIES
        ]
    config = _generation_config(payload)
    if config:
        body["generationConfig"] = config
    return body


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    # Gemini names a function response after its function; canonical tool
    # results only name the call, so names are recovered from earlier calls.
    names: dict[str, str] = {}
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            # Gemini has one system instruction: later system messages join it.
            text = text_of(content)
            if text:
                system.append({"text": text})
        elif role == "user":
            _append(contents, "user", _user_parts(content))
        elif role == "assistant":
            _append(contents, "model", _assistant_parts(message, names))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            name = names.get(call_id) if isinstance(call_id, str) else None
            if name is None:
                raise bad_request(
                    f"the tool message's tool_call_id {call_id!r} answers no earlier tool call",
                    param="messages",
                )
            _append(contents, "user", [_function_response(name, content)])
        elif role == "function":
            name = message.get("name")
            if not isinstance(name, str) or not name:
                raise bad_request("a function message needs a name", param="messages")
            _append(contents, "user", [_function_response(name, content)])
        else:
            raise bad_request(f"unknown message role {role!r}", param="messages")
    if not contents:
        raise bad_request("the messages have no user or assistant content", param="messages")
    for turn in contents:
        if turn["role"] == "model":
            _sign_first_call(turn["parts"])
    return system, contents


def _append(contents: list[dict[str, Any]], role: str, parts: list[dict[str, Any]]) -> None:
    if not parts:
        return  # Gemini refuses a turn without parts
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def _sign_first_call(parts: list[dict[str, Any]]) -> None:
    for part in parts:
        if "functionCall" in part:
            part.setdefault("thoughtSignature", SKIP_THOUGHT_SIGNATURE)
            return


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        return []
    parts = []
    for item in content:
        if not isinstance(item, dict):
            continue
        part = _part(item)
        if part is not None:
            parts.append(part)
    return parts


def _part(item: dict[str, Any]) -> dict[str, Any] | None:
    kind = item.get("type")
    if kind == "text":
        text = item.get("text")
        return {"text": text} if isinstance(text, str) and text else None
    if kind == "image_url":
        image = item.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise bad_request("an image_url part needs a url", param="messages")
        return _media_part(url)
    if kind == "input_audio":
        audio = item.get("input_audio")
        audio = audio if isinstance(audio, dict) else {}
        fmt = audio.get("format")
        mime = AUDIO_TYPES.get(fmt) if isinstance(fmt, str) else None
        if mime is None or not isinstance(audio.get("data"), str):
            raise bad_request("input_audio needs base64 data and a wav or mp3 format")
        return {"inlineData": {"mimeType": mime, "data": audio["data"]}}
    if kind == "file":
        file = item.get("file")
        if isinstance(file, dict) and isinstance(file.get("file_data"), str):
            return _media_part(file["file_data"])
        raise unsupported("files by file_id", KIND, "messages")
    raise unsupported(f"content parts of type {kind!r}", KIND, "messages")


def _media_part(url: str) -> dict[str, Any]:
    inline = parse_data_url(url)
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https", "gs"):
        data: dict[str, Any] = {"fileUri": url}
        guessed, _ = mimetypes.guess_type(urlsplit(url).path)
        if guessed:
            data = {"mimeType": guessed, **data}
        return {"fileData": data}
    if url.startswith("data:"):
        raise bad_request("a data: URL must be base64-encoded", param="messages")
    raise unsupported(f"media URLs with scheme {scheme!r}", KIND, "messages")


def _assistant_parts(message: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    text = text_of(content) if content is not None else ""
    if not text and isinstance(message.get("refusal"), str):
        text = message["refusal"]
    if text:
        parts.append({"text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request("an assistant tool call needs a function name", param="messages")
        name = function["name"]
        if isinstance(call.get("id"), str):
            names[call["id"]] = name
        parts.append({"functionCall": {"name": name, "args": _arguments(function)}})
    return parts


def _arguments(function: dict[str, Any]) -> dict[str, Any]:
    raw = function.get("arguments")
    if raw is None or raw == "":
        return {}
    try:
        args = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    except orjson.JSONDecodeError:
        raise bad_request(
            f"the arguments of tool call {function['name']!r} are not JSON", param="messages"
        ) from None
    if not isinstance(args, dict):
        raise bad_request(
            f"the arguments of tool call {function['name']!r} must be a JSON object",
            param="messages",
        )
    return args


def _function_response(name: str, content: Any) -> dict[str, Any]:
    text = text_of(content)
    response: Any = None
    try:
        response = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    # Gemini wants an object; anything else is passed on as text.
    if not isinstance(response, dict):
        response = {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise unsupported(f"tools of type {kind!r}", KIND, "tools")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise bad_request("a function tool needs a name", param="tools")
    declaration: dict[str, Any] = {"name": function["name"]}
    if isinstance(function.get("description"), str):
        declaration["description"] = function["description"]
    parameters = function.get("parameters")
    if isinstance(parameters, dict):
        schema = gemini_schema(parameters)
        # Gemini refuses an OBJECT without properties: a tool without
        # arguments is declared without parameters.
        if schema.get("type") != "OBJECT" or schema.get("properties"):
            declaration["parameters"] = schema
    return declaration


def _tool_config(
    choice: Any, declarations: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    if choice is None:
        return None, declarations
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}, declarations
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}, declarations
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}, declarations
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise bad_request("tool_choice names no function", param="tool_choice")
        return {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}
        }, declarations
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [
            (t.get("function") or {}).get("name")
            for t in allowed.get("tools") or []
            if isinstance(t, dict)
        ]
        if allowed.get("mode") == "required":
            return {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": names}
            }, declarations
        # Gemini restricts names only when a call is forced; to let the model
        # choose among some tools, only those are declared.
        kept = [d for d in declarations if d["name"] in names]
        return {"functionCallingConfig": {"mode": "AUTO"}}, kept
    raise bad_request("tool_choice is not one Gemini can follow", param="tool_choice")


def _generation_config(payload: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    stop = payload.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    limit = payload.get("max_completion_tokens")
    if limit is None:
        limit = payload.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    for source, name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if payload.get(source) is not None:
            config[name] = payload[source]
    n = payload.get("n")
    if n is not None and n != 1:
        config["candidateCount"] = n
    if payload.get("logprobs"):
        config["responseLogprobs"] = True
        if payload.get("top_logprobs") is not None:
            config["logprobs"] = payload["top_logprobs"]
    effort = payload.get("reasoning_effort")
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise bad_request(f"unknown reasoning_effort {effort!r}", param="reasoning_effort")
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    response_format = payload.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            config["responseMimeType"] = "application/json"
            spec = response_format.get("json_schema") or {}
            if isinstance(spec.get("schema"), dict):
                config["responseSchema"] = gemini_schema(spec["schema"])
        elif kind != "text":
            raise unsupported(f"response_format {kind!r}", KIND, "response_format")
    return config


def gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema rewritten into Gemini's OpenAPI-subset ``Schema``.

    Types are upper-cased, ``["x", "null"]`` and ``anyOf: [x, null]`` become
    ``nullable``, ``oneOf`` reads as ``anyOf``, ``allOf`` is merged, ``const``
    is a one-value ``enum``, local ``$ref``s are inlined; keywords Gemini
    refuses (``additionalProperties``, ``$schema``, ``strict``...) are dropped.
    """
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": value for name, value in schema[key].items()})
    return _schema(schema, defs, (), 0)


def _schema(node: Any, defs: dict[str, Any], refs: tuple[str, ...], depth: int) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {}  # `true` and other boolean schemas accept anything
    if depth > _MAX_SCHEMA_DEPTH:
        raise unsupported("JSON schemas nested this deep", KIND)
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in refs:
            raise unsupported("recursive JSON schemas", KIND)
        if ref not in defs:
            raise bad_request(f"the JSON schema reference {ref!r} is not defined in the schema")
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _schema({**defs[ref], **siblings}, defs, (*refs, ref), depth + 1)

    out: dict[str, Any] = {}
    nullable = node.get("nullable") is True

    kind = node.get("type")
    kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    kinds = [k for k in kinds if k in _SCHEMA_TYPES]
    if "null" in kinds and len(kinds) > 1:
        nullable = True
        kinds = [k for k in kinds if k != "null"]
    if len(kinds) == 1:
        out["type"] = kinds[0].upper()
    elif len(kinds) > 1:
        out["anyOf"] = [{"type": k.upper()} for k in kinds]

    for key in _SCHEMA_COPIED:
        if key in node:
            out[key] = node[key]
    if "example" not in out and isinstance(node.get("examples"), list) and node["examples"]:
        out["example"] = node["examples"][0]
    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _SCHEMA_FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt

    values = node.get("enum")
    if "const" in node:
        values = [node["const"]]
    if isinstance(values, list):
        if None in values:
            nullable = True
        # Gemini's enum values are strings whatever the type.
        out["enum"] = [
            v if isinstance(v, str) else orjson.dumps(v).decode() for v in values if v is not None
        ]
        out.setdefault("type", "STRING")

    properties = node.get("properties")
    if isinstance(properties, Mapping):
        converted = {
            name: _schema(value, defs, refs, depth + 1) for name, value in properties.items()
        }
        if converted:
            out["properties"] = converted
        out.setdefault("type", "OBJECT")
    required = node.get("required")
    if isinstance(required, list):
        known = out.get("properties", {})
        names = [name for name in required if isinstance(name, str) and name in known]
        if names:
            out["required"] = names

    items = node.get("items")
    if isinstance(items, list):
        items = items[0] if items else None
    if isinstance(items, Mapping):
        out["items"] = _schema(items, defs, refs, depth + 1)
        out.setdefault("type", "ARRAY")

    alternatives = node.get("anyOf")
    if not isinstance(alternatives, list):
        alternatives = node.get("oneOf")
    if isinstance(alternatives, list):
        options = []
        for option in alternatives:
            if isinstance(option, Mapping) and option.get("type") == "null" and len(option) == 1:
                nullable = True
            else:
                options.append(_schema(option, defs, refs, depth + 1))
        if len(options) == 1:
            for key, value in options[0].items():
                out.setdefault(key, value)
        elif options:
            out["anyOf"] = options

    for part in node.get("allOf") or []:
        merged = _schema(part, defs, refs, depth + 1)
        if "properties" in merged:
            out["properties"] = {**out.get("properties", {}), **merged.pop("properties")}
        if "required" in merged:
            out["required"] = [*out.get("required", []), *merged.pop("required")]
        for key, value in merged.items():
            out.setdefault(key, value)

    if nullable:
        out["nullable"] = True
    return out


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def usage_from_gemini(data: Any) -> Usage | None:
    """Usage from a ``GenerateContentResponse``'s ``usageMetadata``, if it has one.

    Thinking tokens are billed as output; tool-use prompt tokens (what a
    built-in tool fed the model) as input.
    """
    if not isinstance(data, dict) or not isinstance(data.get("usageMetadata"), dict):
        return None
    meta = data["usageMetadata"]
    return Usage(
        input_tokens=_count(meta.get("promptTokenCount"))
        + _count(meta.get("toolUsePromptTokenCount")),
        output_tokens=_count(meta.get("candidatesTokenCount"))
        + _count(meta.get("thoughtsTokenCount")),
        cached_tokens=_count(meta.get("cachedContentTokenCount")),
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def call_id(response_id: str, candidate: int, position: int, name: str, args: Any) -> str:
    """The id given to a function call Gemini sent without one: the same answer
    always yields the same ids, streamed or not."""
    digest = hashlib.sha256(
        orjson.dumps([response_id, candidate, position, name, args], option=orjson.OPT_SORT_KEYS)
    ).hexdigest()
    return f"call_{position}_{digest[:24]}"


def _finish(reason: Any, has_calls: bool) -> str:
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    # Gemini ends a function-calling answer with a plain STOP.
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def _candidate_parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    # Thought summaries are the model's reasoning, not its answer.
    return [p for p in parts if isinstance(p, dict) and not p.get("thought")]


def _tool_call(
    part: dict[str, Any], response_id: str, candidate: int, position: int
) -> dict[str, Any]:
    call = part["functionCall"]
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise invalid_answer("a function call without a name")
    args = call.get("args") if isinstance(call.get("args"), dict) else {}
    given = call.get("id")
    if not isinstance(given, str) or not given:
        given = call_id(response_id, candidate, position, call["name"], args)
    return tool_call(given, call["name"], args)


def _logprobs(candidate: dict[str, Any]) -> dict[str, Any] | None:
    result = candidate.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for index, token in enumerate(chosen):
        if not isinstance(token, dict):
            continue
        top = tops[index].get("candidates", []) if index < len(tops) else []
        content.append(
            {
                **_logprob(token),
                "top_logprobs": [_logprob(t) for t in top if isinstance(t, dict)],
            }
        )
    return {"content": content, "refusal": None}


def _logprob(token: dict[str, Any]) -> dict[str, Any]:
    text = token.get("token") if isinstance(token.get("token"), str) else ""
    return {
        "token": text,
        "logprob": token.get("logProbability", 0.0),
        "bytes": list(text.encode()),
    }


def _blocked(data: dict[str, Any]) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def chat_completion(data: Any, *, model: str) -> dict[str, Any]:
    """A ``GenerateContentResponse`` as a canonical completion (one choice per candidate)."""
    if not isinstance(data, dict):
        raise invalid_answer("the answer is not a JSON object")
    candidates = data.get("candidates")
    usage = usage_from_gemini(data)
    if not isinstance(candidates, list) or not candidates:
        if _blocked(data):
            # The prompt itself was refused: an empty, filtered answer.
            return completion(
                model=model,
                message={"role": "assistant", "content": ""},
                finish_reason="content_filter",
                usage=usage,
            )
        raise invalid_answer("no 'candidates' in the answer")
    response_id = data.get("responseId") if isinstance(data.get("responseId"), str) else ""
    choices = []
    for position, candidate in enumerate(candidates):
        if not isinstance(candidate, dict):
            raise invalid_answer("a candidate is not an object")
        index = candidate.get("index", position)
        index = index if isinstance(index, int) else position
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in _candidate_parts(candidate):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif "functionCall" in part:
                calls.append(_tool_call(part, response_id, index, len(calls)))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
        }
        if calls:
            message["tool_calls"] = calls
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": _logprobs(candidate),
                "finish_reason": _finish(candidate.get("finishReason"), bool(calls)),
            }
        )
    result = completion(
        model=model,
        message=choices[0]["message"],
        finish_reason=choices[0]["finish_reason"],
        usage=usage,
        id=f"chatcmpl-{response_id}" if response_id else None,
    )
    result["choices"] = sorted(choices, key=lambda choice: choice["index"])
    return result


class GeminiStreamDecoder(JSONEventDecoder):
    """Turns ``streamGenerateContent?alt=sse`` events into canonical chunks.

    Every event is a whole ``GenerateContentResponse`` holding the parts added
    since the previous one; a candidate's last event carries its
    ``finishReason``, and ``usageMetadata`` (cumulative) may ride on any.
    Function calls arrive whole, so each is sent as a tool-call head followed
    by its arguments in one fragment.
    """

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self._chunks = ChunkFactory(model)
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}
        self._finished: set[int] = set()
        self._response_id = ""

    def end(self, chunks: list[dict[str, Any]]) -> None:
        if not self._finished:
            raise invalid_answer("the stream ended before the answer was complete")
        if self.usage is not None:
            chunks.append(self._chunks.usage_chunk(self.usage))

    def event(self, data: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        if "error" in data:
            raise stream_error(data["error"])
        if isinstance(data.get("responseId"), str) and data["responseId"]:
            if not self._response_id and not self._started:
                # The answer's own id names the completion, as it does unstreamed.
                self._chunks.id = f"chatcmpl-{data['responseId']}"
            self._response_id = data["responseId"]
        usage = usage_from_gemini(data)
        if usage is not None:
            self.usage = usage
        candidates = data.get("candidates")
        if isinstance(candidates, list):
            for position, candidate in enumerate(candidates):
                if isinstance(candidate, dict):
                    self._candidate(candidate, position, chunks)
        elif _blocked(data) and not self._finished:
            self._start(0, chunks)
            self._finished.add(0)
            chunks.append(self._chunks.chunk({}, "content_filter"))

    def _start(self, index: int, chunks: list[dict[str, Any]]) -> None:
        if index not in self._started:
            self._started.add(index)
            chunks.append(self._chunks.chunk({"role": "assistant", "content": ""}, index=index))

    def _candidate(
        self, candidate: dict[str, Any], position: int, chunks: list[dict[str, Any]]
    ) -> None:
        index = candidate.get("index", position)
        index = index if isinstance(index, int) else position
        if index in self._finished:
            return
        self._start(index, chunks)
        # An event's log probabilities cover all of its text.
        logprobs = _logprobs(candidate)
        for part in _candidate_parts(candidate):
            if isinstance(part.get("text"), str):
                if part["text"]:
                    chunk = self._chunks.chunk({"content": part["text"]}, index=index)
                    chunk["choices"][0]["logprobs"], logprobs = logprobs, None
                    chunks.append(chunk)
            elif "functionCall" in part:
                slot = self._calls.get(index, 0)
                self._calls[index] = slot + 1
                call = _tool_call(part, self._response_id, index, slot)
                head = tool_call_start(slot, call["id"], call["function"]["name"])
                chunks.append(self._chunks.chunk({"tool_calls": [head]}, index=index))
                arguments = {
                    "index": slot,
                    "function": {"arguments": call["function"]["arguments"]},
                }
                chunks.append(self._chunks.chunk({"tool_calls": [arguments]}, index=index))
        reason = candidate.get("finishReason")
        if reason is not None and reason != "FINISH_REASON_UNSPECIFIED":
            self._finished.add(index)
            finish = _finish(reason, self._calls.get(index, 0) > 0)
            chunks.append(self._chunks.chunk({}, finish, index=index))


def stream_error(error: Any) -> GatewayError:
    """A Google error envelope met inside a stream, with the status it means."""
    if not isinstance(error, dict):
        return invalid_answer("an error event")
    message = str(error.get("message") or error.get("status") or "error event")[:300]
    code = error.get("code")
    if code == 429:
        return GatewayError(
            429,
            f"the provider is rate limiting: {message}",
            code="upstream_rate_limited",
            retryable=True,
            key_fault=True,
        )
    if code == 504:
        return GatewayError(
            504, f"the provider timed out: {message}", code="upstream_timeout", retryable=True
        )
    if isinstance(code, int) and 500 <= code < 600:
        return GatewayError(
            502, f"the provider failed: {message}", code="upstream_error", retryable=True
        )
    return invalid_answer(message)


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def batch_embed_request(target: Target, payload: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI embeddings request as a ``BatchEmbedContentsRequest`` body."""
    value = payload.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts:
        raise bad_request("'input' must be a string or a list of strings", param="input")
    if not all(isinstance(text, str) for text in texts):
        raise unsupported("token-array embedding input", KIND, "input")
    dimensions = payload.get("dimensions")
    name = model_path(target.model)
    requests = []
    for text in texts:
        request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if dimensions is not None:
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return {"requests": requests}


def embedding_list(
    data: Any, *, model: str, encoding: str = "float", input_tokens: int = 0
) -> dict[str, Any]:
    """A ``BatchEmbedContentsResponse`` as OpenAI's embeddings list."""
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    if not isinstance(embeddings, list):
        raise invalid_answer("no 'embeddings' in the answer")
    items = []
    for index, embedding in enumerate(embeddings):
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise invalid_answer("an embedding without values")
        vector: Any = values
        if encoding == "base64":
            # OpenAI's base64 form: little-endian float32s.
            packed = array.array("f", values)
            if sys.byteorder == "big":
                packed.byteswap()
            vector = base64.b64encode(packed.tobytes()).decode()
        items.append({"object": "embedding", "index": index, "embedding": vector})
    return {
        "object": "list",
        "data": items,
        "model": model,
        # The batch answer reports no token count.
        "usage": {"prompt_tokens": input_tokens, "total_tokens": input_tokens},
    }


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


class GeminiAdapter:
    """Chat (and embeddings) translated to and from the Generative Language API."""

    kind = KIND
    wire = KIND
    stream_content_type = "text/event-stream"
    options: dict[str, str] = {
        "safety_threshold": (
            "Blocking threshold applied to every harm category (for example "
            "BLOCK_NONE, BLOCK_ONLY_HIGH, BLOCK_MEDIUM_AND_ABOVE); unset keeps Google's default"
        ),
    }

    @staticmethod
    def _headers(target: Target) -> dict[str, str]:
        return {"x-goog-api-key": target.api_key, "content-type": "application/json"}

    @staticmethod
    def refused_key(status: int, body: bytes) -> bool:
        """Google answers a key it does not accept with 400 INVALID_ARGUMENT,
        reason API_KEY_INVALID, rather than 401."""
        return status == 400 and b"API_KEY_INVALID" in body

    def chat_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        body = generate_content_request(payload, target.options)
        return self._send(target, body, stream=stream)

    def native_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        # The model lives in the URL; a body naming one would be refused.
        body = {k: v for k, v in payload.items() if k not in ("model", "stream")}
        return self._send(target, body, stream=stream)

    def _send(self, target: Target, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
        url = (
            _url(target, "streamGenerateContent") + "?alt=sse"
            if stream
            else _url(target, "generateContent")
        )
        return UpstreamRequest(
            method="POST", url=url, headers=self._headers(target), body=orjson.dumps(body)
        )

    def chat_response(self, data: Any, *, model: str) -> dict[str, Any]:
        return chat_completion(data, model=model)

    def stream_decoder(self, *, model: str) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(model=model)

    def embeddings_request(self, target: Target, payload: dict[str, Any]) -> UpstreamRequest:
        """An OpenAI embeddings request as a ``:batchEmbedContents`` call."""
        encoding = payload.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise bad_request("encoding_format must be float or base64", param="encoding_format")
        return UpstreamRequest(
            method="POST",
            url=_url(target, "batchEmbedContents"),
            headers=self._headers(target),
            body=orjson.dumps(batch_embed_request(target, payload)),
        )

    def embeddings_response(
        self, data: Any, *, model: str, encoding_format: str = "float"
    ) -> dict[str, Any]:
        """A ``:batchEmbedContents`` answer as OpenAI's embeddings list."""
        return embedding_list(data, model=model, encoding=encoding_format)
