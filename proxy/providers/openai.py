"""OpenAI's wire format, also spoken by most self-hosted and hosted peers
(vLLM, Ollama, Groq, Mistral, DeepSeek, Together, Fireworks, OpenRouter, xAI)."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.base import Target, UpstreamRequest
from proxy.providers.canonical import invalid_answer
from proxy.providers.openai_stream import OpenAIChunkDecoder


class OpenAIAdapter:
    """Chat completions relayed as they are, with the provider's model name."""

    kind = "openai"
    wire = "openai"
    stream_content_type = "text/event-stream"
    options: dict[str, str] = {}

    # The provider also serves OpenAI's Responses API (``/v1/responses``).
    speaks_responses = True

    def openai_request(
        self, target: Target, endpoint: str, payload: dict[str, Any]
    ) -> UpstreamRequest:
        """A request to one of OpenAI's endpoints (``chat/completions``,
        ``completions``, ``embeddings``, ``responses``), as the client sent it
        but for the provider's model name."""
        if payload.get("model") != target.model:
            payload = {**payload, "model": target.model}
        return UpstreamRequest(
            method="POST",
            url=f"{target.base_url}/{endpoint}",
            headers={
                "authorization": f"Bearer {target.api_key}",
                "content-type": "application/json",
            },
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
        return data

    def stream_decoder(self, *, model: str) -> OpenAIChunkDecoder:
        return OpenAIChunkDecoder()
