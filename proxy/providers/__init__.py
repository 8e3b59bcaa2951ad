"""Provider adapters, by the ``Provider.kind`` they serve."""

from proxy.providers.anthropic import AnthropicAdapter
from proxy.providers.azure import AzureOpenAIAdapter
from proxy.providers.base import ProviderAdapter, UpstreamRequest
from proxy.providers.bedrock import BedrockAdapter
from proxy.providers.cohere import CohereAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.openai import OpenAIAdapter

REGISTRY: dict[str, ProviderAdapter] = {
    OpenAIAdapter.kind: OpenAIAdapter(),
    AzureOpenAIAdapter.kind: AzureOpenAIAdapter(),
    AnthropicAdapter.kind: AnthropicAdapter(),
    GeminiAdapter.kind: GeminiAdapter(),
    BedrockAdapter.kind: BedrockAdapter(),
    CohereAdapter.kind: CohereAdapter(),
}

__all__ = ["REGISTRY", "ProviderAdapter", "UpstreamRequest"]
