"""Decoding an OpenAI chat completion stream into canonical chunks (which it
already is), for clients of another format."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.canonical import invalid_answer
from proxy.sse import SSEParser
from proxy.usage import Usage, usage_from_openai


class OpenAIChunkDecoder:
    """Parses each ``data:`` event; ``[DONE]`` ends the stream."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self._events = SSEParser()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._chunks(self._events.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        return self._chunks(self._events.finish())

    def _chunks(self, events: list[Any]) -> list[dict[str, Any]]:
        chunks = []
        for event in events:
            if event.data == b"[DONE]" or not event.data:
                continue
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise invalid_answer("an event of the stream is not JSON") from None
            if not isinstance(chunk, dict):
                raise invalid_answer("an event of the stream is not an object")
            if isinstance(chunk.get("error"), dict):
                raise invalid_answer(str(chunk["error"].get("message", "error event"))[:300])
            usage = usage_from_openai(chunk)
            if usage is not None:
                self.usage = usage
            chunks.append(chunk)
        return chunks
