"""How a provider's answer reaches the client: as it is, or translated.

A front door and a provider of the same wire format exchange bytes untouched
(:class:`Passthrough`: a scanner reads the usage as the stream goes by). Any
other pair goes through the canonical shapes (:class:`Translation`): the
adapter decodes the provider's answer, the front door's encoder writes it in
its client's format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import orjson

from proxy.errors import GatewayError
from proxy.providers.base import ProviderAdapter, StreamDecoder
from proxy.providers.canonical import invalid_answer
from proxy.usage import Usage, usage_from_openai

logger = logging.getLogger(__name__)
# What reading a provider's answer of an unexpected shape raises: a field of
# another type than the adapter expects (a list where a string is, a number
# past 64 bits to re-encode).
SHAPE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)


@contextmanager
def reading_answer(provider: str) -> Iterator[None]:
    """Turn a provider answer the adapter could not read into a 502
    ``upstream_invalid_response``: the answer is the provider's fault, and the
    adapters' readers cannot foresee every wrong type in every field."""
    try:
        yield
    except GatewayError:
        raise
    except SHAPE_ERRORS as exc:
        logger.warning("could not read an answer of %s: %s: %s", provider, type(exc).__name__, exc)
        raise invalid_answer("a field of an unexpected type") from None


class StreamRelay(Protocol):
    """Turns upstream stream bytes into client bytes, learning the usage."""

    usage: Usage | None
    delta_events: int

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class ChunkEncoder(Protocol):
    """Writes canonical chunks in a client's stream format."""

    # Content and tool-call deltas written so far (to estimate cut-off usage).
    delta_events: int

    def encode(self, chunks: list[dict[str, Any]]) -> bytes: ...

    def finish(self) -> bytes: ...


class Answer(Protocol):
    """What one attempt does with its provider's answer."""

    stream_content_type: str
    # Whether the provider's rate-limit headers mean something to the client
    # (it speaks the provider's wire format) and are relayed.
    relays_limit_headers: bool

    def complete(self, raw: bytes) -> tuple[bytes, Usage | None]:
        """The client's body for a whole (non-streamed) answer, and its usage."""
        ...

    def stream(self) -> StreamRelay: ...


def parse_json(body: bytes) -> Any:
    """The answer's JSON; one that is not JSON is not relayed as a completion."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GatewayError(
            502, "the provider's answer is not valid JSON", code="upstream_invalid_response"
        ) from None


class Passthrough:
    """Same wire format on both sides: relay bytes, read the usage on the way."""

    relays_limit_headers = True

    def __init__(
        self,
        stream_content_type: str,
        usage_of: Callable[[Any], Usage | None],
        scanner: Callable[[], StreamRelay],
    ) -> None:
        self.stream_content_type = stream_content_type
        self._usage_of = usage_of
        self._scanner = scanner

    def complete(self, raw: bytes) -> tuple[bytes, Usage | None]:
        data = parse_json(raw)
        with reading_answer("a provider"):
            return raw, self._usage_of(data)

    def stream(self) -> StreamRelay:
        return self._scanner()


class Translation:
    """Provider format in, client format out, through the canonical shapes."""

    relays_limit_headers = False

    def __init__(
        self,
        adapter: ProviderAdapter,
        model: str,
        encode_response: Callable[[dict[str, Any]], bytes],
        encoder: Callable[[], ChunkEncoder],
    ) -> None:
        self.adapter = adapter
        self.model = model
        self.stream_content_type = adapter.stream_content_type
        self._encode_response = encode_response
        self._encoder = encoder

    def complete(self, raw: bytes) -> tuple[bytes, Usage | None]:
        data = parse_json(raw)
        with reading_answer(self.adapter.kind):
            canonical = self.adapter.chat_response(data, model=self.model)
            return self._encode_response(canonical), usage_from_openai(canonical)

    def stream(self) -> StreamRelay:
        return TranslatedStream(
            self.adapter.stream_decoder(model=self.model), self._encoder(), self.adapter.kind
        )


class RelayWrapper:
    """A stream relay around another, whose usage and delta count it keeps."""

    def __init__(self, inner: StreamRelay) -> None:
        self.inner = inner

    @property
    def usage(self) -> Usage | None:
        return self.inner.usage

    @property
    def delta_events(self) -> int:
        return self.inner.delta_events


class TranslatedStream:
    """A provider's stream decoded to canonical chunks and re-encoded for the client."""

    def __init__(self, decoder: StreamDecoder, encoder: ChunkEncoder, provider: str) -> None:
        self.decoder = decoder
        self.encoder = encoder
        self.provider = provider

    @property
    def usage(self) -> Usage | None:
        return self.decoder.usage

    @property
    def delta_events(self) -> int:
        return self.encoder.delta_events

    def feed(self, chunk: bytes) -> bytes:
        with reading_answer(self.provider):
            chunks = self.decoder.feed(chunk)
            return self.encoder.encode(chunks) if chunks else b""

    def flush(self) -> bytes:
        with reading_answer(self.provider):
            return self.encoder.encode(self.decoder.finish()) + self.encoder.finish()


def openai_usage_chunk(chunk: dict[str, Any]) -> bool:
    """Whether a canonical chunk is the usage-only last chunk."""
    return not chunk.get("choices") and chunk.get("usage") is not None


class OpenAIChunkEncoder:
    """Canonical chunks as OpenAI's SSE stream (they are OpenAI chunks already);
    subclasses write other OpenAI stream shapes through :meth:`convert`."""

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.delta_events = 0

    def convert(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """The event to send for ``chunk``, or None to send nothing."""
        return chunk

    def encode(self, chunks: list[dict[str, Any]]) -> bytes:
        out = []
        for chunk in chunks:
            usage_only = openai_usage_chunk(chunk)
            if usage_only and not self.include_usage:
                continue
            event = self.convert(chunk)
            if event is None:
                continue
            if not usage_only:
                self.delta_events += 1
            out.append(b"data: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)

    def finish(self) -> bytes:
        return b"data: [DONE]\n\n"
