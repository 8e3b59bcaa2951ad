"""Token usage read from provider answers, streamed or not.

A stream is scanned event by event as it passes: complete events are
forwarded at once, only a partial event waits for its end. The usage event
the gateway asked for on the client's behalf is dropped from the relay when
the client did not ask for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_openai(data: Any) -> Usage | None:
    """Usage from an OpenAI completion or chunk, if it carries one."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        cached_tokens=cached,
    )


def _event_json(event: bytes) -> Any:
    """The JSON of an event's ``data:`` line, or None."""
    start = event.find(b"data: ")
    if start < 0:
        return None
    try:
        return orjson.loads(event[start + 6 :])
    except orjson.JSONDecodeError:
        return None


class EventScanner:
    """Relays a stream as complete events, at once; only a partial event waits
    for its end. Subclasses read what they need from the complete part."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.delta_events = 0
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """What of ``chunk`` (plus what was pending) can be forwarded now."""
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        complete, self._pending = data[: end + 2], data[end + 2 :]
        return self.scan(complete)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    def scan(self, complete: bytes) -> bytes:
        """Complete events, as they are to be forwarded."""
        raise NotImplementedError

    @staticmethod
    def usage_events(complete: bytes) -> Iterator[dict[str, Any]]:
        """The JSON objects of the complete events that mention usage."""
        for event in complete.split(b"\n\n"):
            if b'"usage"' in event:
                data = _event_json(event)
                if isinstance(data, dict):
                    yield data


class OpenAIStreamScanner(EventScanner):
    """Follows an OpenAI chat completion stream for its usage."""

    def __init__(self, *, drop_usage_event: bool) -> None:
        super().__init__()
        self.drop_usage_event = drop_usage_event

    def scan(self, complete: bytes) -> bytes:
        self.delta_events += complete.count(b'"delta"')
        if b'"usage":{' not in complete and b'"usage": {' not in complete:
            return complete
        return self._take_usage(complete)

    def _take_usage(self, complete: bytes) -> bytes:
        kept = []
        for event in complete.split(b"\n\n"):
            if event.startswith(b"data: {") and b'"usage"' in event:
                data = _event_json(event)
                usage = usage_from_openai(data)
                if usage is not None:
                    self.usage = usage
                    if self.drop_usage_event and data.get("choices") == []:
                        continue
            kept.append(event)
        return b"\n\n".join(kept)


def usage_from_anthropic(data: Any) -> Usage | None:
    """Usage from an Anthropic message (or ``message_start``'s message).

    Anthropic counts cache reads and writes apart from ``input_tokens``; the
    gateway's input tokens include them (as OpenAI's ``prompt_tokens`` do),
    with the cache reads also as cached tokens.
    """
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    cached = _int(usage.get("cache_read_input_tokens"))
    return Usage(
        input_tokens=_int(usage.get("input_tokens"))
        + cached
        + _int(usage.get("cache_creation_input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=cached,
    )


def with_anthropic_delta(usage: Usage | None, event: dict[str, Any]) -> Usage:
    """``usage`` (from ``message_start``) updated by a ``message_delta`` event:
    its output count, and the input side when the delta repeats it (newer
    streams do, cumulatively)."""
    usage = usage or Usage()
    late = event.get("usage")
    if not isinstance(late, dict):
        return usage
    if isinstance(late.get("output_tokens"), int):
        usage.output_tokens = late["output_tokens"]
    if late.get("input_tokens"):
        repeated = usage_from_anthropic(event)
        if repeated is not None:
            usage.input_tokens, usage.cached_tokens = repeated.input_tokens, repeated.cached_tokens
    return usage


class AnthropicStreamScanner(EventScanner):
    """Follows an Anthropic message stream for its usage, relaying it untouched."""

    def scan(self, complete: bytes) -> bytes:
        self.delta_events += complete.count(b"event: content_block_delta")
        if b"event: message_start" in complete or b"event: message_delta" in complete:
            self._read_usage(complete)
        return complete

    def _read_usage(self, complete: bytes) -> None:
        for data in self.usage_events(complete):
            if data.get("type") == "message_start":
                self.usage = usage_from_anthropic(data.get("message"))
            elif data.get("type") == "message_delta":
                self.usage = with_anthropic_delta(self.usage, data)


def usage_from_responses(data: Any) -> Usage | None:
    """Usage from an OpenAI Responses API response object."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    return Usage(
        input_tokens=_int(usage.get("input_tokens")),
        output_tokens=_int(usage.get("output_tokens")),
        cached_tokens=_int(details.get("cached_tokens")) if isinstance(details, dict) else 0,
    )


class ResponsesStreamScanner(EventScanner):
    """Follows a Responses API stream for the usage of its final response."""

    def scan(self, complete: bytes) -> bytes:
        self.delta_events += complete.count(b".delta\n")
        for final in (b"response.completed", b"response.incomplete", b"response.failed"):
            if b"event: " + final in complete:
                self._read_usage(complete)
        return complete

    def _read_usage(self, complete: bytes) -> None:
        for data in self.usage_events(complete):
            usage = usage_from_responses(data.get("response"))
            if usage is not None:
                self.usage = usage
