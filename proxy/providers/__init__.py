"""Provider adapters, by the ``Provider.kind`` they serve."""

from proxy.providers.anthropic import AnthropicAdapter
from proxy.providers.azure import AzureOpenAIAdapter
from proxy.providers.base import ProviderAdapter, UpstreamRequest
from proxy.providers.cohere import CohereAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.openai import OpenAIAdapter

REGISTRY: dict[str, ProviderAdapter] = {
    OpenAIAdapter.kind: OpenAIAdapter(),
    AnthropicAdapter.kind: AnthropicAdapter(),
    AzureOpenAIAdapter.kind: AzureOpenAIAdapter(),
    GeminiAdapter.kind: GeminiAdapter(),
    CohereAdapter.kind: CohereAdapter(),
}

__all__ = ["REGISTRY", "ProviderAdapter", "UpstreamRequest"]
