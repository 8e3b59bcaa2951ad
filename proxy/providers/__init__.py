"""Provider adapters, by the ``Provider.kind`` they serve."""

from proxy.providers.anthropic import AnthropicAdapter
from proxy.providers.base import ProviderAdapter, UpstreamRequest
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.openai import OpenAIAdapter

REGISTRY: dict[str, ProviderAdapter] = {
    OpenAIAdapter.kind: OpenAIAdapter(),
    AnthropicAdapter.kind: AnthropicAdapter(),
    GeminiAdapter.kind: GeminiAdapter(),
}

__all__ = ["REGISTRY", "ProviderAdapter", "UpstreamRequest"]
