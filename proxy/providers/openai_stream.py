"""Decoding an OpenAI chat completion stream into canonical chunks (which it
already is), for clients of another format."""

from __future__ import annotations

from typing import Any

from proxy.providers.canonical import JSONEventDecoder, invalid_answer
from proxy.usage import usage_from_openai


class OpenAIChunkDecoder(JSONEventDecoder):
    """Each ``data:`` event is a chunk; ``[DONE]`` ends the stream."""

    def event(self, data: dict[str, Any], chunks: list[dict[str, Any]]) -> None:
        if isinstance(data.get("error"), dict):
            raise invalid_answer(str(data["error"].get("message", "error event"))[:300])
        usage = usage_from_openai(data)
        if usage is not None:
            self.usage = usage
        chunks.append(data)
