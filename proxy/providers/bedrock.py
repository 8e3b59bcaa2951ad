"""Amazon Bedrock's Converse API (``POST /model/{modelId}/converse`` and
``/converse-stream``).

Canonical requests become Converse requests: system messages move to
``system``, turns become ``content`` blocks (``text``, ``image`` with inline
bytes, ``toolUse``, ``toolResult``) in strictly alternating user/assistant
messages, tools become a ``toolConfig`` and sampling settings an
``inferenceConfig``. Answers (``output.message``) and streams (AWS event
streams: ``messageStart`` … ``messageStop``, ``metadata``) come back as
canonical completions and chunks.

Credentials: the provider key is ``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` or
``ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`` (temporary credentials),
and requests are signed with Signature Version 4 for the service ``bedrock``
in the provider's region; a Bedrock API key (``ABSK…`` or
``bedrock-api-key-…``) is sent as a bearer token instead.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from proxy.errors import GatewayError
from proxy.providers import sigv4
from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.canonical import (
    ChunkFactory,
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
from proxy.providers.eventstream import EventStreamDecoder, EventStreamError, Message
from proxy.usage import Usage

KIND = "bedrock"
SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
BEARER_PREFIXES = ("ABSK", "bedrock-api-key-")
# Characters a path segment may carry unencoded (RFC 3986 pchar). The signature
# must cover the path exactly as sent: proxy.upstream sends it as written, but
# other HTTP clients and proxies on the way may turn "%3A" back into ":", so
# the model id is encoded in that normal form.
PATH_SAFE = "-._~!$&'()*+,;=:@"

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
}
IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
# bedrock-runtime[-fips].<region>.amazonaws.com[.cn], and VPC endpoints
# (vpce-….bedrock-runtime.<region>.vpce.amazonaws.com).
_REGION_IN_HOST = re.compile(
    r"(?:^|\.)bedrock-runtime(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\."
)

# An event-stream exception's type -> (status, code, retryable) of the gateway's error.
_STREAM_EXCEPTIONS: dict[str, tuple[int, str, bool]] = {
    "throttlingException": (429, "upstream_rate_limited", True),
    "validationException": (400, "upstream_invalid_request", False),
    "serviceUnavailableException": (503, "upstream_error", True),
    "internalServerException": (502, "upstream_error", True),
    "modelStreamErrorException": (502, "upstream_error", False),
}


def region_of(target: Target) -> str:
    """The region to sign for: the ``region`` option, else the one in the endpoint's host."""
    region = target.options.get("region")
    if region:
        return str(region)
    match = _REGION_IN_HOST.search(urlsplit(target.base_url).hostname or "")
    if match is None:
        raise GatewayError(
            502,
            "the Bedrock provider's region is unknown: set its 'region' option",
            code="upstream_misconfigured",
            retryable=True,
        )
    return match["region"]


def usage_from_bedrock(data: Any) -> Usage | None:
    """Usage from a Converse answer or a stream's ``metadata`` event.

    Bedrock, like Anthropic, counts cache reads and writes apart from
    ``inputTokens``; the gateway's input tokens include them.
    """
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    cached = count("cacheReadInputTokens")
    return Usage(
        input_tokens=count("inputTokens") + cached + count("cacheWriteInputTokens"),
        output_tokens=count("outputTokens"),
        cached_tokens=cached,
    )


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    inline = parse_data_url(image_url(part, where, KIND))
    if inline is None:
        # Converse takes images inline or from S3, never from a web address.
        raise unsupported(f"{where}: images by URL (send a data: URL)", KIND)
    media_type, data = inline
    image_format = IMAGE_FORMATS.get(media_type.lower())
    if image_format is None:
        raise unsupported(f"{where}: images of type {media_type}", KIND)
    return {"image": {"format": image_format, "source": {"bytes": data}}}


def _content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    # Converse refuses blank text blocks, so empty text is left out.
    if isinstance(content, str):
        return [{"text": content}] if content else []
    blocks = []
    for index, part in enumerate(content if isinstance(content, list) else []):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part, f"{where}.content[{index}]"))
        else:
            raise unsupported(f"{where}.content[{index}]: content of type {kind!r}", KIND)
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    text = text_of(message.get("content"))
    return {
        "toolResult": {
            "toolUseId": message.get("tool_call_id") or message.get("name"),
            "content": [{"text": text}] if text else [],
        }
    }


def converse_messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Canonical messages as Converse ``system`` blocks and alternating messages."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        # Converse requires user and assistant turns to alternate.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for index, message in enumerate(messages):
        role = message["role"]
        where = f"messages[{index}]"
        if role in ("system", "developer"):
            text = text_of(message.get("content"))
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _content_blocks(message.get("content"), where))
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), where)
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": call.get("id"),
                            "name": function.get("name"),
                            "input": tool_arguments(function.get("arguments"), where, KIND),
                        }
                    }
                )
            add("assistant", blocks)
        elif role in ("tool", "function"):
            add("user", [_tool_result(message)])
        else:
            raise unsupported(f"{where}: the role {role!r}", KIND, param=where)
    return system, turns


def _tool_config(payload: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    tools = payload.get("tools")
    if not tools:
        return None
    specs = []
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise unsupported(f"tools[{index}]: tools other than functions", KIND, param="tools")
        spec: dict[str, Any] = {"name": function.get("name")}
        if function.get("description"):
            spec["description"] = function["description"]
        spec["inputSchema"] = {
            "json": function.get("parameters") or {"type": "object", "properties": {}}
        }
        specs.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": specs}
    choice = payload.get("tool_choice")
    if choice is None or choice == "auto":
        if choice == "auto":
            config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "none":
        uses_tools = any(
            "toolUse" in block or "toolResult" in block
            for turn in turns
            for block in turn["content"]
        )
        # Converse has no "none" choice, and refuses toolUse/toolResult blocks
        # without a toolConfig: the tools stay only when the history needs them.
        if not uses_tools:
            return None
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        config["toolChoice"] = {"tool": {"name": choice["function"].get("name")}}
    else:
        raise unsupported(f"tool_choice {choice!r}", KIND, param="tool_choice")
    return config


def _output_config(response_format: Any) -> dict[str, Any] | None:
    spec = json_schema_format(response_format, KIND)
    if spec is None:
        return None
    definition: dict[str, Any] = {
        "schema": orjson.dumps(spec.get("schema") or {"type": "object"}).decode()
    }
    for name in ("name", "description"):
        if isinstance(spec.get(name), str) and spec[name]:
            definition[name] = spec[name]
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": definition}}}


def converse_request(payload: dict[str, Any]) -> dict[str, Any]:
    """A canonical chat request as a Converse request body.

    ``seed``, ``user`` and ``parallel_tool_calls`` have no Converse
    equivalent and are left out (OpenAI treats them as hints too).
    """
    if (payload.get("n") or 1) != 1:
        raise unsupported("'n' other than 1", KIND, param="n")
    if payload.get("logprobs"):
        raise unsupported("logprobs", KIND, param="logprobs")
    system, turns = converse_messages(payload["messages"])
    body: dict[str, Any] = {"messages": turns}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if max_tokens is not None:
        inference["maxTokens"] = max_tokens
    for source, name in (("temperature", "temperature"), ("top_p", "topP")):
        if payload.get(source) is not None:
            inference[name] = payload[source]
    stop = payload.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = _tool_config(payload, turns)
    if tool_config is not None:
        body["toolConfig"] = tool_config
    output_config = _output_config(payload.get("response_format"))
    if output_config is not None:
        body["outputConfig"] = output_config
    return body


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def _finish_reason(stop_reason: Any) -> str:
    return STOP_REASONS.get(stop_reason if isinstance(stop_reason, str) else "", "stop")


def _message(data: dict[str, Any]) -> dict[str, Any]:
    output = data.get("output")
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        raise invalid_answer("no 'output.message.content' in the answer")
    text: list[str] = []
    calls = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            text.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append(tool_call(use.get("toolUseId"), use.get("name"), use.get("input")))
    result: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        result["tool_calls"] = calls
    return result


class BedrockAdapter:
    """Bedrock's Converse API; ``base_url`` is the runtime endpoint
    (``https://bedrock-runtime.<region>.amazonaws.com``)."""

    kind = KIND
    wire = KIND
    stream_content_type = EVENT_STREAM
    options = {
        "region": "the AWS region requests are signed for "
        "(default: the one in the endpoint, bedrock-runtime.<region>.amazonaws.com)",
    }

    def _request(self, target: Target, body: dict[str, Any], *, stream: bool) -> UpstreamRequest:
        return self._post(target, "converse-stream" if stream else "converse", body, stream)

    def _post(
        self, target: Target, operation: str, body: dict[str, Any], stream: bool
    ) -> UpstreamRequest:
        model = quote(target.model, safe=PATH_SAFE)
        url = f"{target.base_url.rstrip('/')}/model/{model}/{operation}"
        data = orjson.dumps(body)
        headers = {
            "content-type": "application/json",
            "accept": EVENT_STREAM if stream else "application/json",
        }
        key = target.api_key.strip()
        credentials = None if key.startswith(BEARER_PREFIXES) else sigv4.parse_credentials(key)
        if credentials is None:
            headers["authorization"] = f"Bearer {key}"
        else:
            headers = sigv4.sign(
                method="POST",
                url=url,
                headers=headers,
                body=data,
                credentials=credentials,
                region=region_of(target),
                service=SERVICE,
            )
        return UpstreamRequest(method="POST", url=url, headers=headers, body=data)

    def chat_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        return self._request(target, converse_request(payload), stream=stream)

    def native_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        # The model travels in the URL, never in a Converse body.
        body = {k: v for k, v in payload.items() if k not in ("modelId", "model", "stream")}
        return self._request(target, body, stream=stream)

    def chat_response(self, data: Any, *, model: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise invalid_answer("not a Converse answer")
        return completion(
            model=model,
            message=_message(data),
            finish_reason=_finish_reason(data.get("stopReason")),
            usage=usage_from_bedrock(data),
        )

    def stream_decoder(self, *, model: str) -> BedrockStreamDecoder:
        return BedrockStreamDecoder(model)

    # -- embeddings (InvokeModel with Titan Text Embeddings V2) --------------------------

    def embeddings_request(self, target: Target, payload: dict[str, Any]) -> UpstreamRequest:
        """An OpenAI embeddings request as an InvokeModel request for Titan Text
        Embeddings V2 (``amazon.titan-embed-text-v2:0``), which embeds one text a call."""
        raw = payload.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise unsupported("Token arrays as embeddings input", KIND, param="input")
        if len(texts) != 1:
            raise unsupported("More than one embeddings input per request", KIND, param="input")
        body: dict[str, Any] = {"inputText": texts[0], "normalize": True}
        if payload.get("dimensions") is not None:
            body["dimensions"] = payload["dimensions"]
        return self._post(target, "invoke", body, False)

    def embeddings_response(self, data: Any, *, model: str) -> dict[str, Any]:
        """Titan's embedding as OpenAI's embeddings list."""
        vector = data.get("embedding") if isinstance(data, dict) else None
        if not isinstance(vector, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in vector
        ):
            raise invalid_answer("no embedding in the InvokeModel answer")
        tokens = data.get("inputTextTokenCount")
        tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


class BedrockStreamDecoder:
    """ConverseStream's event-stream messages as canonical chunks."""

    def __init__(self, model: str) -> None:
        self.usage: Usage | None = None
        self._frames = EventStreamDecoder()
        self._chunks = ChunkFactory(model)
        # Content block index -> tool call index, for toolUse blocks.
        self._tool_index: dict[int, int] = {}
        self._started = False
        self._stopped = False

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        try:
            messages = self._frames.feed(data)
        except EventStreamError as exc:
            raise invalid_answer(f"the event stream is corrupt: {exc}") from None
        return self._decode(messages)

    def finish(self) -> list[dict[str, Any]]:
        try:
            self._frames.finish()
        except EventStreamError as exc:
            raise invalid_answer(str(exc)) from None
        if not self._stopped:
            raise invalid_answer("the stream ended before messageStop")
        return []

    def _decode(self, messages: list[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in messages:
            kind = message.headers.get(":message-type", "event")
            if kind == "exception":
                raise self._exception(
                    str(message.headers.get(":exception-type", "")), message.payload
                )
            if kind == "error":
                code = message.headers.get(":error-code", "error")
                detail = message.headers.get(":error-message", "")
                raise invalid_answer(f"{code}: {detail}"[:300])
            try:
                data = orjson.loads(message.payload) if message.payload else {}
            except orjson.JSONDecodeError:
                raise invalid_answer("an event of the stream is not JSON") from None
            if not isinstance(data, dict):
                raise invalid_answer("an event of the stream is not an object")
            self._event(str(message.headers.get(":event-type", "")), data, out)
        return out

    @staticmethod
    def _exception(name: str, payload: bytes) -> GatewayError:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        detail = data.get("message") if isinstance(data, dict) else None
        text = f"{name or 'exception'}: {detail or payload[:200].decode('utf-8', 'replace')}"
        status, code, retryable = _STREAM_EXCEPTIONS.get(name, (502, "upstream_error", False))
        if status == 502 and name == "modelStreamErrorException":
            return invalid_answer(text[:300])
        return GatewayError(
            status, f"the provider failed mid-stream: {text}"[:400], code=code, retryable=retryable
        )

    def _start(self, out: list[dict[str, Any]]) -> None:
        if not self._started:
            self._started = True
            out.append(self._chunks.chunk({"role": "assistant", "content": ""}))

    def _event(self, kind: str, data: dict[str, Any], out: list[dict[str, Any]]) -> None:
        chunks = self._chunks
        if kind == "messageStart":
            self._start(out)
        elif kind == "contentBlockStart":
            self._start(out)
            start = data.get("start") or {}
            use = start.get("toolUse") if isinstance(start, dict) else None
            if isinstance(use, dict):
                index = len(self._tool_index)
                self._tool_index[data.get("contentBlockIndex", 0)] = index
                call = tool_call_start(index, use.get("toolUseId"), use.get("name"))
                out.append(chunks.chunk({"tool_calls": [call]}))
        elif kind == "contentBlockDelta":
            self._start(out)
            delta = data.get("delta") or {}
            if not isinstance(delta, dict):
                return
            if isinstance(delta.get("text"), str):
                if delta["text"]:
                    out.append(chunks.chunk({"content": delta["text"]}))
            elif isinstance(delta.get("toolUse"), dict):
                block = data.get("contentBlockIndex", 0)
                if block not in self._tool_index:
                    raise invalid_answer("a toolUse delta for a block that never started")
                fragment = {
                    "index": self._tool_index[block],
                    "function": {"arguments": delta["toolUse"].get("input") or ""},
                }
                out.append(chunks.chunk({"tool_calls": [fragment]}))
        elif kind == "messageStop":
            self._start(out)
            self._stopped = True
            out.append(chunks.chunk({}, _finish_reason(data.get("stopReason"))))
        elif kind == "metadata":
            usage = usage_from_bedrock(data)
            if usage is not None:
                self.usage = usage
                out.append(chunks.usage_chunk(usage))
