"""Which inference path goes to which consumer.

A dict lookup on the exact path rather than a URL resolver: this runs for
every request, and every other path belongs to Django.
"""

from __future__ import annotations

from typing import Any

from proxy.anthropic_api import AnthropicModelsConsumer, CountTokensConsumer, MessagesConsumer
from proxy.openai_api import ChatCompletionsConsumer, ModelsConsumer
from proxy.openai_endpoints import CompletionsConsumer, EmbeddingsConsumer, ResponsesConsumer

OPENAI_ROUTES: dict[str, Any] = {
    "/v1/chat/completions": ChatCompletionsConsumer.as_asgi(),
    "/v1/models": ModelsConsumer.as_asgi(),
    "/v1/embeddings": EmbeddingsConsumer.as_asgi(),
    "/v1/completions": CompletionsConsumer.as_asgi(),
    "/v1/responses": ResponsesConsumer.as_asgi(),
}
ANTHROPIC_ROUTES: dict[str, Any] = {
    "/v1/messages": MessagesConsumer.as_asgi(),
    "/v1/messages/count_tokens": CountTokensConsumer.as_asgi(),
}
INFERENCE_ROUTES: dict[str, Any] = {**OPENAI_ROUTES, **ANTHROPIC_ROUTES}
# Clients whose base URL ends in /openai (/v1) or /anthropic reach the same consumers.
INFERENCE_ROUTES.update({f"/openai{path}": app for path, app in OPENAI_ROUTES.items()})
INFERENCE_ROUTES.update({f"/anthropic{path}": app for path, app in ANTHROPIC_ROUTES.items()})
INFERENCE_ROUTES["/anthropic/v1/models"] = AnthropicModelsConsumer.as_asgi()


class InferenceRouter:
    """Sends inference paths to their consumer and everything else to Django."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        app = INFERENCE_ROUTES.get(path.rstrip("/") if path.endswith("/") else path)
        await (app or self.fallback)(scope, receive, send)
