"""Forwarding a request upstream and relaying the answer as it arrives.

Streams are relayed chunk by chunk, never buffered; a non-streamed answer is
read whole (it must be, to be sent with a status) up to a size limit.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import orjson

from gateway_project.fast_settings import settings
from proxy import upstream
from proxy.errors import GatewayError
from proxy.metrics import metrics
from proxy.providers import ProviderAdapter, UpstreamRequest
from proxy.timeouts import Timeouts
from proxy.translation import Answer, StreamRelay
from proxy.upstream import Response, UpstreamError, UpstreamUnreachable
from proxy.usage import Usage

if TYPE_CHECKING:
    from proxy.cache import Keeper
    from proxy.consumer import InferenceConsumer
    from proxy.content import ContentCapture
    from proxy.guarding import ResponseGuard

SSE = b"text/event-stream; charset=utf-8"
ERROR_BODY_LIMIT = 64 * 1024


class Exchange:
    """What the relay learnt of the answer: its usage, or how much streamed."""

    __slots__ = (
        "_waiting",
        "delta_events",
        "sent_at",
        "ttft_ms",
        "upstream_ms",
        "upstream_seconds",
        "usage",
    )

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.delta_events = 0
        self.sent_at = 0.0
        self.upstream_ms: int | None = None  # until the provider's headers
        self.ttft_ms: int | None = None  # until the first streamed bytes left
        # Time spent on the provider's side of every attempt (metrics: what is
        # not the gateway's own overhead).
        self.upstream_seconds = 0.0
        self._waiting = False

    def begin(self) -> None:
        """An attempt's request is being sent."""
        self.sent_at = time.perf_counter()
        self._waiting = True

    def end(self) -> None:
        """The attempt's answer is in (or it failed); idempotent."""
        if self._waiting:
            self.upstream_seconds += time.perf_counter() - self.sent_at
            self._waiting = False

    def mark_headers(self) -> None:
        self.upstream_ms = int((time.perf_counter() - self.sent_at) * 1000)

    def mark_first_byte(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = int((time.perf_counter() - self.sent_at) * 1000)


class KeepAlive:
    """SSE comments sent while a stream waits for its first bytes.

    A timer, not a task: a stream whose provider answers in time costs one
    scheduled callback. When it fires, the client's response starts (200,
    SSE) and gets ``: keep-alive``; an error after that can only be told as
    an event of the stream, and the request is no longer retried.
    """

    __slots__ = ("_handle", "_sending", "consumer", "interval", "served_by")

    def __init__(
        self, consumer: InferenceConsumer, served_by: list[tuple[bytes, bytes]], interval: float
    ) -> None:
        self.consumer = consumer
        self.served_by = served_by
        self.interval = interval
        self._sending: asyncio.Task[None] | None = None
        self._handle = asyncio.get_running_loop().call_later(interval, self._fire)

    def _fire(self) -> None:
        self._sending = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        consumer = self.consumer
        if not consumer.response_started:
            await consumer.start_response(200, stream_headers(consumer, self.served_by))
        await consumer.send_chunk(KEEPALIVE)
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._fire)

    async def stop(self) -> None:
        """No more comments; one being sent is finished first."""
        self._handle.cancel()
        if self._sending is not None:
            await asyncio.shield(self._sending)
            self._handle.cancel()  # it may have armed the next one


KEEPALIVE = b": keep-alive\n\n"


def stream_headers(
    consumer: InferenceConsumer, served_by: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    headers = consumer.response_headers(SSE)
    headers.append((b"cache-control", b"no-cache"))
    headers.extend(served_by)
    return headers


async def forward(
    consumer: InferenceConsumer,
    request: UpstreamRequest,
    *,
    stream: bool,
    served_by: list[tuple[bytes, bytes]],
    exchange: Exchange,
    answer: Answer,
    adapter: ProviderAdapter | None = None,
    timeouts: Timeouts | None = None,
    guard: ResponseGuard | None = None,
    keep: Keeper | None = None,
    capture: ContentCapture | None = None,
) -> None:
    """Send ``request`` upstream and relay the answer to ``consumer``'s client
    (``adapter``: the provider's, for how it reports a refused key;
    ``timeouts``: the provider's, else the gateway's defaults; ``guard``: the
    response guardrails, when a policy applies; ``keep``: the response
    cache's copy of the answer, when it is to be stored; ``capture``: the
    request log's copy of the answer's text, for teams that keep content)."""
    timeouts = timeouts or default_timeouts()
    interval = settings.GATEWAY_SSE_KEEPALIVE_SECONDS
    keepalive = KeepAlive(consumer, served_by, interval) if stream and interval > 0 else None
    exchange.begin()
    try:
        try:
            response = await upstream.request(
                request.method, request.url, request.headers, request.body, timeouts
            )
        except BaseException:
            if keepalive is not None:
                await keepalive.stop()
            raise
        async with response:
            exchange.mark_headers()
            limits = (
                provider_limit_headers(response, served_by) if answer.relays_limit_headers else []
            )
            if response.status >= 400:
                if keepalive is not None:
                    await keepalive.stop()
                raise await upstream_error(response, adapter, limits)
            if limits:
                served_by = served_by + limits
            if stream and response.content_type == answer.stream_content_type:
                relay = answer.stream()
                if guard is not None:
                    relay = guard.stream(relay)
                if keep is not None:
                    relay = keep.stream(relay)
                if capture is not None:
                    relay = capture.stream(relay)
                await relay_stream(consumer, response, served_by, exchange, relay, keepalive)
            else:
                if keepalive is not None:
                    await keepalive.stop()
                body = await read_limited(response, settings.GATEWAY_MAX_RESPONSE_BYTES)
                exchange.end()
                body, exchange.usage = answer.complete(body)
                if consumer.response_started:
                    # Keep-alives went out already: the answer can only follow as a
                    # stream's error event.
                    raise GatewayError(
                        502,
                        "the provider answered a stream request without a stream",
                        code="upstream_invalid_response",
                    )
                if guard is not None:
                    body = guard.complete(body)
                if keep is not None:
                    keep.complete(body)
                if capture is not None:
                    capture.answer_body(body)
                await consumer.send_json(200, body, served_by)
    except UpstreamUnreachable as exc:
        raise GatewayError(
            502,
            f"the provider could not be reached ({exc.reason or 'connection failed'})",
            code="upstream_unreachable",
            retryable=True,
        ) from None
    except TimeoutError:
        raise GatewayError(
            504, "the provider did not answer in time", code="upstream_timeout", retryable=True
        ) from None
    except UpstreamError as exc:
        raise GatewayError(
            502,
            f"the provider's answer broke off ({exc})",
            code="upstream_error",
            retryable=True,
        ) from None
    finally:
        exchange.end()


_default_timeouts: Timeouts | None = None


def default_timeouts() -> Timeouts:
    global _default_timeouts
    if _default_timeouts is None:
        _default_timeouts = Timeouts.of({})
    return _default_timeouts


async def relay_stream(
    consumer: InferenceConsumer,
    response: Response,
    served_by: list[tuple[bytes, bytes]],
    exchange: Exchange,
    relay: StreamRelay,
    keepalive: KeepAlive | None = None,
) -> None:
    if not consumer.response_started:
        await consumer.start_response(200, stream_headers(consumer, served_by))
    metrics.add("gateway_active_streams", 1)
    try:
        read = response.read_any
        while chunk := await read():
            if keepalive is not None:
                await keepalive.stop()
                keepalive = None
            chunk = relay.feed(chunk)
            if not chunk:
                continue
            exchange.mark_first_byte()
            await consumer.send_chunk(chunk)
        exchange.end()
        await consumer.send_chunk(relay.flush(), more=False)
    finally:
        if keepalive is not None:
            await keepalive.stop()
        metrics.add("gateway_active_streams", -1)
        exchange.usage = relay.usage
        exchange.delta_events = relay.delta_events


async def read_limited(response: Response, limit: int) -> bytes:
    if response.content_length is not None and response.content_length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    read = response.read_any
    while chunk := await read():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        502,
        f"the provider's answer is larger than {limit} bytes",
        code="upstream_response_too_large",
    )


# Rate-limit headers of OpenAI (and its peers) and of Anthropic.
LIMIT_HEADER_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-")


def provider_limit_headers(
    response: Response, own: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The provider's rate-limit headers, except those the gateway sets itself
    (a virtual key's own limits are what its caller is held to)."""
    taken = {name for name, _ in own}
    relayed = []
    for name, value in response.raw_headers:
        lowered = name.lower()
        if lowered.startswith(LIMIT_HEADER_PREFIXES) and lowered not in taken:
            relayed.append((lowered, value))
    return relayed


async def upstream_error(
    response: Response,
    adapter: ProviderAdapter | None = None,
    limits: list[tuple[bytes, bytes]] | None = None,
) -> GatewayError:
    """The client-facing error for an upstream error answer.

    Request errors (400, 404, 422…) keep their status and the provider's
    message; the provider refusing *our* credentials (401/403, or what the
    adapter's ``refused_key`` recognises) is the gateway's fault (502), not the
    client's; rate limits stay 429 with ``Retry-After`` and the provider's
    rate-limit headers (``limits``, for a client of the provider's wire format).
    """
    try:
        raw = await asyncio.wait_for(response.read(ERROR_BODY_LIMIT), timeout=5)
    except (TimeoutError, UpstreamError):
        raw = b""
    message = _provider_message(raw) or f"HTTP {response.status}"
    status = response.status
    headers: list[tuple[bytes, bytes]] = []
    if status == 429:
        headers += limits or []
        retry_after = response.header(b"retry-after")
        if retry_after:
            headers.append((b"retry-after", retry_after.encode("latin-1")))
        return GatewayError(
            429,
            f"the provider is rate limiting: {message}",
            code="upstream_rate_limited",
            headers=headers,
            retryable=True,
            key_fault=True,
            retry_after=_seconds(retry_after),
        )
    refused_key = getattr(adapter, "refused_key", None)
    if status in (401, 403) or (refused_key is not None and refused_key(status, raw)):
        return GatewayError(
            502,
            f"the provider refused the gateway's credentials: {message}",
            code="upstream_auth_error",
            retryable=True,
            key_fault=True,
        )
    if 400 <= status < 500 and status not in (408, 409):
        return GatewayError(status, message, code="upstream_invalid_request")
    if status == 504:
        return GatewayError(
            504, f"the provider timed out: {message}", code="upstream_timeout", retryable=True
        )
    return GatewayError(
        502,
        f"the provider failed with HTTP {status}: {message}",
        code="upstream_error",
        retryable=True,
        retry_after=_seconds(response.header(b"retry-after")),
    )


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare from APIs; ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _provider_message(raw: bytes) -> str | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, list) and data:
        data = data[0]  # some providers wrap their error in a list
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:500]
        if isinstance(error, str):
            return error[:500]
        # Bedrock, Cohere and others: a top-level message.
        for name in ("message", "Message", "detail"):
            if isinstance(data.get(name), str):
                return data[name][:500]
    return None
