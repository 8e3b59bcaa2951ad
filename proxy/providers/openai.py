"""OpenAI's wire format, also spoken by most self-hosted and hosted peers."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.base import UpstreamRequest


class OpenAIAdapter:
    """Chat completions relayed as they are, with the provider's model name."""

    kind = "openai"

    def chat_request(
        self, *, base_url: str, api_key: str, provider_model: str, payload: dict[str, Any]
    ) -> UpstreamRequest:
        if payload.get("model") != provider_model:
            payload = {**payload, "model": provider_model}
        return UpstreamRequest(
            method="POST",
            url=f"{base_url}/chat/completions",
            headers={"authorization": f"Bearer {api_key}", "content-type": "application/json"},
            body=orjson.dumps(payload),
        )
