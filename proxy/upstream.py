"""The shared upstream HTTP client: HTTP/1.1 over pooled asyncio protocols.

A small client of its own rather than aiohttp's: relaying a small JSON
answer, aiohttp's ``ClientSession`` cost about 90 µs of the request's 260
(request objects, auto headers, tracing hooks, timer contexts), this one does
the same exchange with one parser (httptools, which the server side uses
too), one write and one timer (docs/performance.md). httpx was slower still
(≈ 600 requests/s against aiohttp's 7,200 on one core here).

What it does, and no more, since the gateway only POSTs to provider APIs:

- one pool per process (per event loop) of keep-alive connections per
  (scheme, host, port), at most ``GATEWAY_UPSTREAM_POOL_SIZE`` in all
  (0: no cap); an idle connection expires after 30 s, and a connection goes
  back to the pool only once its response came off the wire whole, so an
  answer abandoned half-way (the client left, a timeout, an error) closes it;
- https through ``ssl.create_default_context()`` (SNI, certificate checks);
- the request sent as given: method, the URL's path and query byte for byte
  (no normalisation: a Bedrock signature covers the path exactly as sent),
  the adapter's headers plus ``host``, ``content-length`` and
  ``accept-encoding: identity`` (answers are relayed as they are, so none is
  asked for compressed);
- answers with a ``content-length``, chunked, or read until the connection
  closes; bodies handed over as they arrive (a stream is never buffered; the
  socket stops being read while 256 KiB wait unread);
- the provider's limits (``proxy.timeouts.Timeouts``): ``connect`` for
  opening a connection, ``first_byte`` until the response headers, ``read``
  for the longest silence (also before the headers), ``total`` for the whole
  exchange, connection and body included. A limit passed raises
  ``TimeoutError``; a connection that cannot be opened
  :class:`UpstreamUnreachable`; an answer that breaks off or is not HTTP
  :class:`UpstreamBroken`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import httptools

from gateway_project.fast_settings import settings
from keys.addresses import connect_targets, normal_host

if TYPE_CHECKING:
    from proxy.timeouts import Timeouts

IDLE_SECONDS = 30.0
# Unread body bytes after which the socket is no longer read (the client is slow).
HIGH_WATER = 256 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a request target may carry as they are; anything else (spaces,
# non-ASCII) is percent-encoded. "%" is kept: the URL is already encoded.
TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


class UpstreamError(Exception):
    """The upstream exchange failed (not a timeout)."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be opened; ``reason`` as the OS put it."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamBroken(UpstreamError):
    """The connection broke, or what came back is not a complete HTTP answer."""


def host_of(url: str) -> str:
    """The ``host`` header the client sends for ``url``: lower-cased (IDNA for a
    non-ASCII name), the port only when not the scheme's default."""
    parts = urlsplit(url)
    return _host_header(_ascii_host(parts.hostname or ""), parts.port, parts.scheme.lower())


def _ascii_host(hostname: str) -> str:
    return hostname if hostname.isascii() else hostname.encode("idna").decode("ascii")


def _host_header(hostname: str, port: int | None, scheme: str) -> str:
    host = f"[{hostname}]" if ":" in hostname else hostname  # an IPv6 literal
    if port is not None and port != DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host


class Endpoint:
    """What the client needs of one URL, worked out once."""

    __slots__ = ("host", "key", "port", "server_hostname", "target", "tls")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise UpstreamUnreachable(f"not an http(s) URL: {url[:100]!r}")
        self.tls = scheme == "https"
        hostname = self.server_hostname = _ascii_host(parts.hostname)
        self.port = parts.port or DEFAULT_PORTS[scheme]
        self.key = (scheme, hostname, self.port)
        self.host = _host_header(hostname, parts.port, scheme)
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        self.target = quote(target, safe=TARGET_SAFE)


# A provider's few endpoints are asked again and again.
_endpoints: dict[str, Endpoint] = {}


def endpoint(url: str) -> Endpoint:
    """``url`` as an :class:`Endpoint`, worked out on its first use only."""
    found = _endpoints.get(url)
    if found is None:
        if len(_endpoints) >= 4096:  # per-request URLs (say, with a query) must not pile up
            _endpoints.clear()
        found = _endpoints[url] = Endpoint(url)
    return found


class Response:
    """One answer: its status and headers, and a body read as it arrives.

    Use it as an async context manager (``async with response:``): leaving
    returns the connection to the pool if the answer came in whole, and
    closes it otherwise.
    """

    __slots__ = (
        "_chunks",
        "_connection",
        "_error",
        "_first_byte_at",
        "_handle",
        "_headers_done",
        "_keep_alive",
        "_last_data",
        "_paused",
        "_size",
        "_total_at",
        "_until_close",
        "_waiter",
        "complete",
        "content_length",
        "content_type",
        "parser",
        "raw_headers",
        "status",
    )

    def __init__(self, connection: Connection, first_byte_at: float, total_at: float) -> None:
        self._connection = connection
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_type = ""
        self.content_length: int | None = None
        self.complete = False
        self._chunks: list[bytes] = []
        self._size = 0
        self._paused = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._headers_done = False
        self._keep_alive = False
        self._until_close = False
        self._first_byte_at = first_byte_at
        self._total_at = total_at
        self._last_data = 0.0
        self._handle: asyncio.TimerHandle | None = None

    # -- headers --------------------------------------------------------------

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower case), as text."""
        for key, value in self.raw_headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    # -- the parser's callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # bytes after the answer: the connection is not clean
            self._connection.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # "100 Continue" and the like: the answer follows
            self.raw_headers = []
            return
        self.status = status
        chunked = False
        for name, value in self.raw_headers:
            lowered = name.lower()
            if lowered == b"content-type":
                self.content_type = value.split(b";", 1)[0].strip().lower().decode("latin-1")
            elif lowered == b"content-length":
                with contextlib.suppress(ValueError):  # the parser refuses it
                    self.content_length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if chunked:
            self.content_length = None
        # Neither a length nor chunks: the body ends when the connection does.
        self._until_close = not chunked and self.content_length is None and status not in (204, 304)
        self._headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._chunks.append(body)
        self._size += len(body)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pause()
        if self._waiter is not None:
            self._wake()

    def on_message_complete(self) -> None:
        if not self._headers_done or self.complete:
            return  # an informational answer ended
        self.complete = True
        # Asked now: the parser forgets it once the message is over.
        self._keep_alive = self.parser.should_keep_alive()
        self._stop_timer()
        self._wake()

    # -- what the connection reports ------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_data = self._connection.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._connection.reusable = False  # also when the junk follows a complete answer
            self.fail(UpstreamBroken(f"not an HTTP answer ({exc})"))

    def eof(self, exc: BaseException | None) -> None:
        """The connection closed (``exc``: why, if it broke)."""
        if self.complete:
            return
        if exc is None and self._headers_done and self._until_close:
            self.complete = True
            self._stop_timer()
            self._wake()
        elif isinstance(exc, OSError) and exc.strerror:
            self.fail(UpstreamBroken(exc.strerror))
        else:
            self.fail(UpstreamBroken("the connection closed before the answer ended"))

    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` and close its connection."""
        if self._error is None and not self.complete:
            self._error = error
            self._chunks.clear()
            self._stop_timer()
            self._connection.close()
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- timeouts ---------------------------------------------------------------

    def start_timer(self, sent_at: float) -> None:
        self._last_data = sent_at
        self._handle = self._connection.loop.call_at(self._deadline(), self._check_deadline)

    def _deadline(self) -> float:
        deadline = self._last_data + self._connection.read_timeout
        if not self._headers_done and self._first_byte_at < deadline:
            deadline = self._first_byte_at
        return min(deadline, self._total_at)

    def _check_deadline(self) -> None:
        # One timer per exchange, moved on lazily: data arriving only notes the time.
        self._handle = None
        if self.complete or self._error is not None:
            return
        loop = self._connection.loop
        now = loop.time()
        if self._chunks and now < self._total_at:
            self._last_data = now  # our reader is slow, the provider is not silent
        deadline = self._deadline()
        if now >= deadline:
            self.fail(TimeoutError())
        else:
            self._handle = loop.call_at(deadline, self._check_deadline)

    def _stop_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    # -- reading ----------------------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter = self._connection.loop.create_future()
        try:
            await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None

    async def headers(self) -> None:
        while not self._headers_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read_any(self) -> bytes:
        """The body bytes that arrived since the last call; ``b""`` at its end."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._size = 0
                if self._paused:
                    self._paused = False
                    self._connection.resume()
                return data
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            await self._wait()

    async def read(self, limit: int) -> bytes:
        """The body, or its first ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await self.read_any()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit]

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool, or is closed."""
        self._stop_timer()
        # The parser refers back to this object: dropping it leaves no cycle
        # for the garbage collector to find.
        self.parser = None
        connection = self._connection
        if connection.response is self:
            connection.response = None
            if self.complete and self._error is None and connection.reusable and self._keep_alive:
                connection.pool.put_back(connection)
            else:
                connection.close()


class Connection(asyncio.Protocol):
    """One pooled connection to a provider; one exchange at a time."""

    def __init__(self, pool: Pool, key: tuple[str, str, int]) -> None:
        self.pool = pool
        self.key = key
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.reusable = True
        self.closed = False
        self.counted = True  # holds one of the pool's places
        self.idle_since = 0.0
        self.read_timeout = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # nothing was asked: a server talking out of turn
            self.close()
        else:
            response.data_received(data)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost says the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None:
            response.eof(exc)
        self.pool.forget(self)

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.reusable = False
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        self.pool.forget(self)

    def send(
        self,
        method: str,
        where: Endpoint,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
        total_at: float,
    ) -> Response:
        lines = [f"{method} {where.target} HTTP/1.1\r\n"]
        has_host = has_encoding = False
        for name, value in headers.items():
            lowered = name.lower()
            if lowered == "host":
                has_host = True
            elif lowered == "accept-encoding":
                has_encoding = True
            elif lowered in ("content-length", "transfer-encoding", "connection"):
                continue  # the client's own to set
            lines.append(f"{name}: {value}\r\n")
        if not has_host:
            lines.append(f"host: {where.host}\r\n")
        if not has_encoding:
            lines.append("accept-encoding: identity\r\n")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(body) if body else 0}\r\n")
        lines.append("\r\n")
        head = "".join(lines)
        # A CR or LF inside a name or value would split the request.
        if head.count("\n") != len(lines) or head.count("\r") != len(lines):
            raise UpstreamBroken("a request header holds a line break")
        now = self.loop.time()
        self.read_timeout = timeouts.read
        response = self.response = Response(self, now + timeouts.first_byte, total_at)
        data = head.encode()
        transport = self.transport
        assert transport is not None
        if body and len(body) < 65536:
            transport.write(data + body)
        else:
            transport.write(data)
            if body:
                transport.write(body)
        response.start_timer(now)
        return response


class Pool:
    """Keep-alive connections per (scheme, host, port), ``limit`` at most in all."""

    def __init__(
        self,
        limit: int,
        *,
        tls: ssl.SSLContext | None = None,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.limit = limit
        self.idle_seconds = idle_seconds
        self._tls = tls
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._count = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        # Hosts whose connections are not kept (see close_idle_to).
        self._withdrawn: frozenset[str] = frozenset()
        self.closed = False

    @property
    def open_connections(self) -> int:
        """Connections open or being opened, idle ones included."""
        return self._count

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
    ) -> Response:
        """Send the request and return the answer once its headers are in."""
        where = endpoint(url)
        total_at = self.loop.time() + timeouts.total
        connection = self._idle_connection(where.key)
        if connection is None:
            connection = await self._open(where, timeouts, total_at)
        try:
            response = connection.send(method, where, headers, body, timeouts, total_at)
            if not response._headers_done:
                await response.headers()
        except BaseException:
            connection.response = None
            connection.close()
            raise
        return response

    def _idle_connection(self, key: tuple[str, str, int]) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        expired = self.loop.time() - self.idle_seconds
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if (
                not connection.closed
                and connection.idle_since > expired
                and transport is not None
                and not transport.is_closing()
            ):
                return connection
            connection.close()
        return None

    async def _open(self, where: Endpoint, timeouts: Timeouts, total_at: float) -> Connection:
        loop = self.loop
        while self.limit and self._count >= self.limit:
            if not self._close_oldest_idle():
                waiter = loop.create_future()
                self._waiters.append(waiter)
                try:
                    async with asyncio.timeout_at(total_at):
                        await waiter
                except BaseException:
                    if waiter.done() and not waiter.cancelled():
                        self._wake_one()  # the place it was given goes to the next in line
                    raise
                finally:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
            if self.closed:
                raise UpstreamUnreachable("the client is shutting down")
            reused = self._idle_connection(where.key)
            if reused is not None:
                return reused
        self._count += 1
        connection = Connection(self, where.key)
        try:
            async with asyncio.timeout_at(min(loop.time() + timeouts.connect, total_at)):
                # Only addresses outside private networks, unless the provider
                # allows them (keys.addresses: DNS rebinding).
                addresses = await connect_targets(where.server_hostname, where.port)
                for position, address in enumerate(addresses):
                    try:
                        await loop.create_connection(
                            lambda: connection,
                            address,
                            where.port,
                            ssl=self._tls_context() if where.tls else None,
                            server_hostname=where.server_hostname if where.tls else None,
                        )
                        break
                    except OSError:
                        if position == len(addresses) - 1:
                            raise
        except OSError as exc:
            connection.closed = True
            self.forget(connection)
            raise UpstreamUnreachable(exc.strerror or _ssl_reason(exc)) from None
        except BaseException:
            connection.closed = True
            self.forget(connection)
            raise
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def _close_oldest_idle(self) -> bool:
        oldest: Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        oldest.close()
        return True

    def put_back(self, connection: Connection) -> None:
        """``connection`` finished an exchange cleanly: keep it for the next one."""
        if (
            self.closed
            or connection.closed
            or (self._withdrawn and normal_host(connection.key[1]) in self._withdrawn)
        ):
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self._idle.setdefault(connection.key, []).append(connection)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.idle_seconds, self._sweep)
        self._wake_one()

    def forget(self, connection: Connection) -> None:
        """``connection`` closed: its place is free."""
        if connection.counted:
            connection.counted = False
            self._count -= 1
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close_idle_to(self, hosts: frozenset[str]) -> None:
        """Close the idle connections to ``hosts`` (normalised names), and
        those in use when their answer ends: the next request to them opens a
        connection, and its address is checked."""
        self._withdrawn = hosts
        for key, idle in self._idle.items():
            if normal_host(key[1]) in hosts:
                for connection in idle:
                    connection.close()
                idle.clear()

    def _sweep(self) -> None:
        self._sweeper = None
        expired = self.loop.time() - self.idle_seconds
        remaining = False
        for idle in self._idle.values():
            for connection in [c for c in idle if c.closed or c.idle_since <= expired]:
                idle.remove(connection)
                connection.close()
            remaining = remaining or bool(idle)
        if remaining and not self.closed:
            self._sweeper = self.loop.call_later(self.idle_seconds / 2, self._sweep)

    async def close(self) -> None:
        """Close every idle connection; those in use close when their answer ends."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)  # let the transports finish closing


def _ssl_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or 'handshake error'}"
    return "connection failed"


_pool: Pool | None = None


def pool() -> Pool:
    """The process's pool, bound to the running loop."""
    global _pool
    loop = asyncio.get_running_loop()
    if _pool is None or _pool.closed or _pool.loop is not loop:
        _pool = Pool(settings.GATEWAY_UPSTREAM_POOL_SIZE)
    return _pool


async def request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    timeouts: Timeouts,
) -> Response:
    """Send a request on the process's pool; the answer once its headers are in."""
    return await pool().request(method, url, headers, body, timeouts)


def close_idle_to(hosts: frozenset[str]) -> None:
    """Close the process pool's idle connections to ``hosts``, if it has any."""
    if _pool is not None and not _pool.closed:
        _pool.close_idle_to(hosts)


async def close() -> None:
    global _pool
    if _pool is not None and not _pool.closed:
        await _pool.close()
    _pool = None
