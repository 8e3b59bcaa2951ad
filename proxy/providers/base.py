"""The interface every provider adapter implements.

An adapter turns a request the gateway accepted into the bytes its provider
expects (URL, headers, body), and knows how its provider reports usage.
Adding a provider is one module implementing :class:`ProviderAdapter` and one
line in ``proxy.providers.REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What to send upstream."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


class ProviderAdapter(Protocol):
    """Wire-format translation for one kind of provider."""

    kind: str

    def chat_request(
        self, *, base_url: str, api_key: str, provider_model: str, payload: dict[str, Any]
    ) -> UpstreamRequest:
        """An OpenAI-shaped chat request (already validated) as this provider's request."""
        ...
