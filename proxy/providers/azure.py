"""Azure OpenAI: OpenAI's Chat Completions behind Azure's addressing and auth.

Two surfaces are spoken. The classic one addresses a *deployment* in the path
and versions the API in the query
(``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...``);
the newer v1 surface (option ``api_version`` = ``v1``) is OpenAI's own path
under ``{base_url}/openai/v1`` with the deployment name as the body's
``model``. Either way the key goes in ``api-key`` (or, with option ``auth`` =
``bearer``, an Entra ID token in ``Authorization``).

Bodies are OpenAI's, so OpenAI clients pass through untranslated; embeddings
and legacy completions are addressed like chat, the Responses API always on
the v1 surface, where it is generally available. Answers
carry Azure's content-filter annotations (``prompt_filter_results`` at the
top, ``content_filter_results`` on each choice); streams may open with a chunk
whose ``choices`` is empty and send annotation-only chunks without a
``delta``. The canonical views drop those annotations so other front doors see
plain OpenAI chunks; a filtered answer keeps its ``content_filter`` finish.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from proxy.errors import GatewayError
from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.canonical import invalid_answer
from proxy.providers.openai_stream import OpenAIChunkDecoder
from proxy.usage import Usage

DEFAULT_API_VERSION = "2024-10-21"
V1 = "v1"
AUTH_MODES = ("api-key", "bearer")

# Azure-only annotations, absent from OpenAI's shapes.
_CHOICE_ANNOTATIONS = ("content_filter_results", "content_filter_offsets")
_TOP_ANNOTATIONS = ("prompt_filter_results", "prompt_annotations")


class AzureOpenAIAdapter:
    """Chat completions for an Azure OpenAI resource, by deployment name."""

    kind = "azure"
    wire = "openai"
    stream_content_type = "text/event-stream"
    options: dict[str, str] = {
        "api_version": (
            f"The api-version query parameter (default {DEFAULT_API_VERSION}); "
            f"'{V1}' uses the v1 surface (/openai/v1, deployment name as the model)."
        ),
        "auth": (
            "How the key is sent: 'api-key' (the resource key, default) or 'bearer' "
            "(a Microsoft Entra ID token in Authorization)."
        ),
    }

    # The Responses API, on Azure's v1 surface whatever ``api_version`` says.
    speaks_responses = True

    def openai_request(
        self, target: Target, endpoint: str, payload: dict[str, Any]
    ) -> UpstreamRequest:
        """A request to one of OpenAI's endpoints (``chat/completions``,
        ``completions``, ``embeddings``, ``responses``) of the target's deployment."""
        if payload.get("model") != target.model:
            payload = {**payload, "model": target.model}
        return UpstreamRequest(
            method="POST",
            url=endpoint_url(target, endpoint),
            headers={**auth_headers(target), "content-type": "application/json"},
            body=orjson.dumps(payload),
        )

    def chat_request(
        self, target: Target, payload: dict[str, Any], *, stream: bool
    ) -> UpstreamRequest:
        return self.openai_request(target, "chat/completions", payload)

    native_request = chat_request

    def chat_response(self, data: Any, *, model: str) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise invalid_answer("no 'choices' in the completion")
        return _without_annotations(data)

    def stream_decoder(self, *, model: str) -> AzureChunkDecoder:
        return AzureChunkDecoder()


def endpoint_url(target: Target, endpoint: str) -> str:
    """The URL of one of OpenAI's endpoints for the target's deployment, on its
    API surface (Responses exists on the v1 surface only)."""
    version = target.options.get("api_version") or DEFAULT_API_VERSION
    if version == V1 or endpoint == "responses":
        return f"{target.base_url}/openai/v1/{endpoint}"
    deployment = quote(target.model, safe="")
    return (
        f"{target.base_url}/openai/deployments/{deployment}/{endpoint}"
        f"?api-version={quote(version, safe='')}"
    )


def auth_headers(target: Target) -> dict[str, str]:
    """The credential header for the target's ``auth`` option."""
    mode = target.options.get("auth") or "api-key"
    if mode == "bearer":
        return {"authorization": f"Bearer {target.api_key}"}
    if mode == "api-key":
        return {"api-key": target.api_key}
    # Provider.clean only checks names, so an odd value is a configuration error.
    raise GatewayError(
        502,
        f"the provider's 'auth' option must be one of {', '.join(AUTH_MODES)}",
        code="provider_misconfigured",
    )


def _without_annotations(data: dict[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in data.items() if k not in _TOP_ANNOTATIONS}
    result["choices"] = [
        {k: v for k, v in choice.items() if k not in _CHOICE_ANNOTATIONS}
        if isinstance(choice, dict)
        else choice
        for choice in data["choices"]
    ]
    return result


class AzureChunkDecoder:
    """OpenAI's chunk decoding, minus Azure's annotation-only chunks."""

    def __init__(self) -> None:
        self._inner = OpenAIChunkDecoder()

    @property
    def usage(self) -> Usage | None:
        return self._inner.usage

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._clean(self._inner.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        return self._clean(self._inner.finish())

    @staticmethod
    def _clean(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for chunk in chunks:
            choices = chunk.get("choices")
            if not isinstance(choices, list):
                raise invalid_answer("a chunk of the stream has no 'choices'")
            # A choice with neither delta nor finish only reports filter results.
            choices = [
                c
                for c in choices
                if isinstance(c, dict) and ("delta" in c or c.get("finish_reason") is not None)
            ]
            if not choices and not isinstance(chunk.get("usage"), dict):
                # The prompt-filter chunk that opens Azure's streams, or annotations.
                continue
            cleaned = _without_annotations({**chunk, "choices": choices})
            if cleaned.get("usage", 0) is None:
                # Chunks before the usage chunk say "usage": null when usage was asked for.
                del cleaned["usage"]
            for choice in cleaned["choices"]:
                choice.setdefault("delta", {})
            kept.append(cleaned)
        return kept
