"""OpenAI's other inference endpoints: ``/v1/embeddings``, ``/v1/completions``
(legacy text completions) and ``/v1/responses``.

Each runs the shared chat flow (key, policy, admission, routing, settlement).
OpenAI-compatible providers get the request as sent; embeddings reach other
providers through their adapter's ``embeddings_request``, and legacy
completions through the chat translation (the prompt as one user message, the
answer's text back as ``choices[].text``). The Responses API is passed through
to providers that speak it.
"""

from __future__ import annotations

import array
import base64
import sys
from typing import Any

import orjson

from proxy import guarding
from proxy.chat import ChatConsumer
from proxy.errors import GatewayError, bad_request
from proxy.openai_api import (
    openai_passthrough,
    validate_stop,
    wants_usage,
    with_usage_requested,
)
from proxy.providers.base import ProviderAdapter, Target, UpstreamRequest
from proxy.providers.canonical import unsupported
from proxy.translation import (
    Answer,
    OpenAIChunkEncoder,
    Passthrough,
    Translation,
    openai_usage_chunk,
    parse_json,
)
from proxy.usage import (
    ResponsesStreamScanner,
    Usage,
    usage_from_openai,
    usage_from_responses,
)


def _model(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string.", param="model")
    return model


def _stream(payload: dict[str, Any]) -> bool:
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_request("'stream' must be a boolean.", param="stream")
    return bool(stream)


def _openai_request(
    adapter: ProviderAdapter, where: Target, endpoint: str, payload: dict[str, Any]
) -> UpstreamRequest:
    build = getattr(adapter, "openai_request", None)
    if build is None:
        raise unsupported(f"/v1/{endpoint}", adapter.kind)
    return build(where, endpoint, payload)


# --- embeddings ----------------------------------------------------------------------


# Token ids are what a tokenizer hands out: small non-negative integers.
MAX_TOKEN_ID = 2**31 - 1


def _token(item: Any) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and 0 <= item <= MAX_TOKEN_ID


def text_or_tokens(value: Any) -> bool:
    """Whether ``value`` is what OpenAI takes as embeddings ``input`` and as a
    completion ``prompt``: a string, or a non-empty array of strings, of token
    ids, or of token-id arrays. Every element is checked: a wrong one is the
    client's mistake (400), not something to forward for the provider to fail on."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    return (
        all(isinstance(item, str) for item in value)
        or all(_token(item) for item in value)
        or all(isinstance(item, list) and item and all(_token(t) for t in item) for item in value)
    )


def validate_embeddings(payload: dict[str, Any]) -> str:
    model = _model(payload)
    value = payload.get("input")
    if value == "" or not text_or_tokens(value):
        raise bad_request(
            "'input' must be a non-empty string, array of strings, or array of token arrays.",
            param="input",
        )
    return model


class EmbeddingsTranslation:
    """An embeddings answer of another provider, as OpenAI's list of embeddings
    (base64 of little-endian float32, as OpenAI encodes them, when asked)."""

    stream_content_type = "application/json"
    relays_limit_headers = False

    def __init__(self, adapter: Any, model: str, *, base64: bool) -> None:
        self.adapter = adapter
        self.model = model
        self.base64 = base64

    def complete(self, raw: bytes) -> tuple[bytes, Usage | None]:
        result = self.adapter.embeddings_response(parse_json(raw), model=self.model)
        if self.base64:
            for item in result.get("data") or []:
                vector = item.get("embedding")
                if isinstance(vector, list):
                    packed = array.array("f", vector)
                    if sys.byteorder != "little":
                        packed.byteswap()
                    item["embedding"] = base64.b64encode(packed.tobytes()).decode()
        return orjson.dumps(result), usage_from_openai(result)

    def stream(self) -> Any:  # embeddings never stream
        raise NotImplementedError


class EmbeddingsConsumer(ChatConsumer):
    """``POST /v1/embeddings``."""

    endpoint = "embeddings"

    wire = "openai"
    produces_output = False

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        return validate_embeddings(payload), False

    def prepare(
        self, adapter: ProviderAdapter, where: Target, payload: dict[str, Any], stream: bool
    ) -> tuple[UpstreamRequest, Answer]:
        if adapter.wire == "openai":
            request = _openai_request(adapter, where, "embeddings", payload)
            return request, EMBEDDINGS_PASSTHROUGH
        translate = getattr(adapter, "embeddings_request", None)
        if translate is None:
            raise unsupported("Embeddings", adapter.kind)
        answer = EmbeddingsTranslation(
            adapter, where.model, base64=payload.get("encoding_format") == "base64"
        )
        return translate(where, payload), answer


def _no_stream() -> Any:
    raise NotImplementedError


EMBEDDINGS_PASSTHROUGH = Passthrough("application/json", usage_from_openai, _no_stream)


# --- legacy completions ------------------------------------------------------------


def validate_completion(payload: dict[str, Any]) -> tuple[str, bool]:
    model = _model(payload)
    if not text_or_tokens(payload.get("prompt")):
        raise bad_request(
            "'prompt' is required: a string, or a non-empty array of strings, of token ids "
            "or of token-id arrays.",
            param="prompt",
        )
    validate_stop(payload)
    return model, _stream(payload)


def _not_translatable(what: str, param: str | None = None) -> GatewayError:
    return GatewayError(
        400,
        f"{what} is not supported by providers that are not OpenAI-compatible",
        code="unsupported_parameter",
        param=param,
    )


def completion_as_chat(payload: dict[str, Any], stream: bool) -> dict[str, Any]:
    """A legacy completion request as a canonical chat request (one prompt)."""
    prompt = payload["prompt"]
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise _not_translatable("A batch or token prompt", param="prompt")
        prompt = prompt[0]
    if payload.get("echo") or payload.get("suffix") or payload.get("best_of", 1) != 1:
        raise _not_translatable("echo, suffix and best_of")
    chat: dict[str, Any] = {
        "model": payload["model"],
        "messages": [{"role": "user", "content": prompt}],
        # OpenAI's legacy default.
        "max_tokens": payload.get("max_tokens") or 16,
    }
    for name in ("temperature", "top_p", "stop", "n", "seed", "user"):
        if payload.get(name) is not None:
            chat[name] = payload[name]
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _text_choice(choice: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "text": text,
        "index": choice.get("index", 0),
        "logprobs": None,
        "finish_reason": choice.get("finish_reason"),
    }


def _text_completion(source: dict[str, Any], choices: list[dict[str, Any]]) -> dict[str, Any]:
    """A legacy completion (or one of its chunks) with the id, time, model and
    usage of the canonical ``source``."""
    result = {
        "id": source.get("id"),
        "object": "text_completion",
        "created": source.get("created"),
        "model": source.get("model"),
        "choices": choices,
    }
    if source.get("usage"):
        result["usage"] = source["usage"]
    return result


def encode_text_completion(canonical: dict[str, Any]) -> bytes:
    choices = [
        _text_choice(choice, (choice.get("message") or {}).get("content") or "")
        for choice in canonical.get("choices") or []
    ]
    return orjson.dumps(_text_completion(canonical, choices))


class TextCompletionEncoder(OpenAIChunkEncoder):
    """Canonical chat chunks as a legacy completion stream."""

    def convert(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if openai_usage_chunk(chunk):
            return _text_completion(chunk, [])
        choices = [
            _text_choice(choice, (choice.get("delta") or {}).get("content") or "")
            for choice in chunk.get("choices") or []
        ]
        choices = [c for c in choices if c["text"] or c["finish_reason"]]
        return _text_completion(chunk, choices) if choices else None


class CompletionsConsumer(ChatConsumer):
    """``POST /v1/completions`` (legacy), streaming and not."""

    endpoint = "completions"

    wire = "openai"
    response_shape = guarding.OPENAI_TEXT

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        return validate_completion(payload)

    def canonical(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        return completion_as_chat(payload, stream)

    def translation(self, adapter: ProviderAdapter, model: str, payload: dict[str, Any]) -> Answer:
        include = wants_usage(payload)
        return Translation(
            adapter,
            model,
            encode_text_completion,
            lambda: TextCompletionEncoder(include_usage=include),
        )

    def prepare(
        self, adapter: ProviderAdapter, where: Target, payload: dict[str, Any], stream: bool
    ) -> tuple[UpstreamRequest, Answer]:
        if adapter.wire != "openai":
            return super().prepare(adapter, where, payload, stream)
        sent = with_usage_requested(payload) if stream else payload
        return _openai_request(adapter, where, "completions", sent), openai_passthrough(payload)


# --- responses -----------------------------------------------------------------------

RESPONSES_PASSTHROUGH = Passthrough(
    "text/event-stream", usage_from_responses, ResponsesStreamScanner
)


def validate_response(payload: dict[str, Any]) -> tuple[str, bool]:
    model = _model(payload)
    if not isinstance(payload.get("input"), str | list):
        raise bad_request("'input' is required: a string or an array of items.", param="input")
    return model, _stream(payload)


class ResponsesConsumer(ChatConsumer):
    """``POST /v1/responses``: passed through to providers that speak it."""

    endpoint = "responses"

    wire = "openai"
    response_shape = guarding.RESPONSES

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        return validate_response(payload)

    def prepare(
        self, adapter: ProviderAdapter, where: Target, payload: dict[str, Any], stream: bool
    ) -> tuple[UpstreamRequest, Answer]:
        if not getattr(adapter, "speaks_responses", False):
            raise unsupported("The Responses API", adapter.kind)
        return _openai_request(adapter, where, "responses", payload), RESPONSES_PASSTHROUGH
