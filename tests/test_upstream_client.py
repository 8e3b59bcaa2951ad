"""The upstream HTTP client on its own, against real sockets: how answers end
(a length, chunks, the connection closing), when a connection is reused and
when it is not, the timeouts, the pool's cap, TLS.

Each test runs a small scripted HTTP server on an ephemeral port (a real
asyncio server, so every byte crosses a socket) and the client on uvloop,
as in the gateway.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from proxy.timeouts import Timeouts
from proxy.upstream import Pool, UpstreamBroken, UpstreamUnreachable, host_of
from tests.processes import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]
SHORT = Timeouts(connect=2, first_byte=2, read=2, total=5)


class Server:
    """Answers each request on a connection with ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []  # each request's head, as received
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, tls: ssl.SSLContext | None = None) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/v1/chat/completions", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                await self.handler(reader, writer, self)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture(autouse=True)
def loopback_allowed() -> Iterator[None]:
    """The test servers' loopback addresses may be connected to, as for a
    provider allowed into private networks."""
    from keys import addresses

    before = addresses._private_allowed
    addresses.allow_private_hosts(["localhost", "127.0.0.1", "::1"])
    yield
    addresses._private_allowed = before


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(asyncio.wait_for(test(), timeout=30))


async def answer_ok(reader, writer, server) -> None:
    body = b'{"ok": true}'
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\n"
        b"x-ratelimit-remaining: 1\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()


async def post(pool: Pool, url: str, timeouts: Timeouts = SHORT, **headers: str) -> bytes:
    response = await pool.request("POST", url, headers, b'{"q": 1}', timeouts)
    async with response:
        return await response.read(1 << 20)


def test_a_length_delimited_answer_is_read_whole_and_its_connection_reused() -> None:
    async def test() -> None:
        server = await Server(answer_ok).start()
        pool = Pool(10)
        response = await pool.request("POST", server.url(), {"x-a": "1"}, b'{"q": 1}', SHORT)
        async with response:
            assert response.status == 200
            assert response.content_type == "application/json"
            assert response.content_length == 12
            assert await response.read(1 << 20) == b'{"ok": true}'
        assert response.raw_headers.count((b"set-cookie", b"a=1")) == 1
        assert (b"set-cookie", b"b=2") in response.raw_headers
        assert response.header(b"x-ratelimit-remaining") == "1"
        assert await post(pool, server.url()) == b'{"ok": true}'
        assert await post(pool, server.url()) == b'{"ok": true}'
        assert server.connections == 1
        assert pool.idle_connections() == 1
        await pool.close()
        await server.stop()

    run(test)


def test_the_request_carries_host_length_and_the_path_as_given() -> None:
    async def test() -> None:
        server = await Server(answer_ok).start()
        pool = Pool(10)
        path = "/model/arn%3Aaws%3Abedrock:us-east-1/invoke?alt=sse&a=%2F"
        await post(pool, server.url(path), authorization="Bearer k")
        head = server.requests[0].decode()
        assert head.startswith(f"POST {path} HTTP/1.1\r\n")
        assert f"\r\nhost: 127.0.0.1:{server.port}\r\n" in head
        assert "\r\ncontent-length: 8\r\n" in head
        assert "\r\nauthorization: Bearer k\r\n" in head
        assert "\r\naccept-encoding: identity\r\n" in head
        assert host_of(server.url(path)) == f"127.0.0.1:{server.port}"
        assert host_of("https://Bedrock-Runtime.us-east-1.amazonaws.com:443/x") == (
            "bedrock-runtime.us-east-1.amazonaws.com"
        )
        await pool.close()
        await server.stop()

    run(test)


def test_a_header_with_a_line_break_is_refused_not_sent() -> None:
    async def test() -> None:
        server = await Server(answer_ok).start()
        pool = Pool(10)
        with pytest.raises(UpstreamBroken):
            await post(pool, server.url(), **{"x-evil": "a\r\nx-injected: 1"})
        assert server.requests == []
        await pool.close()
        await server.stop()

    run(test)


def test_a_chunked_answer_is_handed_over_chunk_by_chunk() -> None:
    async def test() -> None:
        second = asyncio.Event()

        async def chunked(reader, writer, server) -> None:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            writer.write(b"7\r\ndata: 1\r\n")
            await writer.drain()
            await second.wait()  # the client must have the first chunk by now
            writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
            await writer.drain()

        server = await Server(chunked).start()
        pool = Pool(10)
        response = await pool.request("POST", server.url(), {}, b"{}", SHORT)
        async with response:
            assert response.content_type == "text/event-stream"
            assert response.content_length is None
            assert await response.read_any() == b"data: 1"
            second.set()
            assert await response.read_any() == b"data: 2"
            assert await response.read_any() == b""
        second.clear()
        response = await pool.request("POST", server.url(), {}, b"{}", SHORT)
        async with response:
            assert await response.read_any() == b"data: 1"
            second.set()
            assert await response.read(100) == b"data: 2"
        assert server.connections == 1  # a chunked answer read to its end keeps it
        await pool.close()
        await server.stop()

    run(test)


def test_an_answer_without_length_is_read_until_the_connection_closes() -> None:
    async def until_close(reader, writer, server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
        writer.write(b'{"part": ')
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b'"two"}')
        await writer.drain()
        writer.close()

    async def test() -> None:
        server = await Server(until_close).start()
        pool = Pool(10)
        assert await post(pool, server.url()) == b'{"part": "two"}'
        assert await post(pool, server.url()) == b'{"part": "two"}'
        assert server.connections == 2
        assert pool.idle_connections() == 0
        await pool.close()
        await server.stop()

    run(test)


def test_an_abandoned_answer_closes_its_connection() -> None:
    async def big(reader, writer, server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"x" * 99990)
        await writer.drain()

    async def test() -> None:
        server = await Server(big).start()
        pool = Pool(10)
        response = await pool.request("POST", server.url(), {}, b"{}", SHORT)
        async with response:
            assert await response.read_any() == b"x" * 10
        # Left before its end: not reused, and its place in the pool is free.
        assert pool.idle_connections() == 0
        await asyncio.sleep(0.05)
        assert pool.open_connections == 0
        assert len(await post(pool, server.url())) == 100000
        assert server.connections == 2
        await pool.close()
        await server.stop()

    run(test)


def test_a_cancelled_request_closes_its_connection() -> None:
    async def silent(reader, writer, server) -> None:
        await asyncio.sleep(10)

    async def test() -> None:
        server = await Server(silent).start()
        pool = Pool(10)
        task = asyncio.ensure_future(post(pool, server.url()))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.idle_connections() == 0
        assert pool.open_connections == 0
        await pool.close()
        await server.stop()

    run(test)


def test_an_answer_cut_short_is_broken_not_complete() -> None:
    async def cut(reader, writer, server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async def cut_chunks(reader, writer, server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        await writer.drain()
        writer.close()

    async def test() -> None:
        for handler in (cut, cut_chunks):
            server = await Server(handler).start()
            pool = Pool(10)
            with pytest.raises(UpstreamBroken):
                await post(pool, server.url())
            await pool.close()
            await server.stop()

    run(test)


def test_what_is_not_http_is_broken() -> None:
    async def garbage(reader, writer, server) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async def test() -> None:
        server = await Server(garbage).start()
        pool = Pool(10)
        with pytest.raises(UpstreamBroken):
            await post(pool, server.url())
        assert pool.idle_connections() == 0
        await pool.close()
        await server.stop()

    run(test)


def test_a_refused_connection_is_unreachable_with_the_reason() -> None:
    async def test() -> None:
        pool = Pool(10)
        with pytest.raises(UpstreamUnreachable) as caught:
            await post(pool, f"http://127.0.0.1:{free_port()}/v1")
        assert caught.value.reason == "Connection refused"
        assert pool.open_connections == 0
        await pool.close()

    run(test)


def test_the_first_byte_timeout_bounds_the_wait_for_headers() -> None:
    async def slow(reader, writer, server) -> None:
        await asyncio.sleep(3)

    async def test() -> None:
        server = await Server(slow).start()
        pool = Pool(10)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(pool, server.url(), Timeouts(connect=2, first_byte=0.3, read=5, total=9))
        assert 0.25 < time.monotonic() - started < 1.5
        # The read timeout bounds it too, when it is the shorter one.
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(pool, server.url(), Timeouts(connect=2, first_byte=5, read=0.3, total=9))
        assert 0.25 < time.monotonic() - started < 1.5
        assert pool.open_connections == 0
        await pool.close()
        await server.stop()

    run(test)


def test_the_read_timeout_is_the_longest_silence_and_total_bounds_the_whole() -> None:
    async def trickle(reader, writer, server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(40):  # a chunk every 0.1 s: never silent for long
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
        await asyncio.sleep(10)  # then silent

    async def test() -> None:
        server = await Server(trickle).start()
        pool = Pool(10)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(pool, server.url(), Timeouts(connect=2, first_byte=2, read=0.5, total=20))
        elapsed = time.monotonic() - started
        assert 4.3 < elapsed < 6  # 4 s of trickle passed, then 0.5 s of silence
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await post(pool, server.url(), Timeouts(connect=2, first_byte=2, read=0.5, total=1))
        assert 0.9 < time.monotonic() - started < 2
        await pool.close()
        await server.stop()

    run(test)


def test_a_slow_reader_is_not_a_silent_provider() -> None:
    async def fast(reader, writer, server) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.write(b"abcd")
        await writer.drain()

    async def test() -> None:
        server = await Server(fast).start()
        pool = Pool(10)
        response = await pool.request(
            "POST", server.url(), {}, b"", Timeouts(connect=2, first_byte=2, read=0.3, total=5)
        )
        async with response:
            await asyncio.sleep(0.8)  # the body waits unread longer than the read timeout
            assert await response.read(10) == b"abcd"
        assert pool.idle_connections() == 1
        await pool.close()
        await server.stop()

    run(test)


def test_the_pool_caps_connections_and_queues_the_rest() -> None:
    async def slowish(reader, writer, server) -> None:
        await asyncio.sleep(0.1)
        await answer_ok(reader, writer, server)

    async def test() -> None:
        server = await Server(slowish).start()
        other = await Server(answer_ok).start()
        pool = Pool(2)
        answers = await asyncio.gather(*(post(pool, server.url()) for _ in range(6)))
        assert answers == [b'{"ok": true}'] * 6
        assert server.connections == 2
        # Full of idle connections to one host, the pool makes room for another.
        assert await post(pool, other.url()) == b'{"ok": true}'
        assert pool.open_connections == 2
        await pool.close()
        await server.stop()
        await other.stop()

    run(test)


def test_an_idle_connection_expires() -> None:
    async def test() -> None:
        server = await Server(answer_ok).start()
        pool = Pool(10, idle_seconds=0.2)
        await post(pool, server.url())
        await asyncio.sleep(0.5)
        assert pool.idle_connections() == 0  # swept
        await post(pool, server.url())
        assert server.connections == 2
        await pool.close()
        await server.stop()

    run(test)


def test_a_connection_the_provider_closed_while_idle_is_not_reused() -> None:
    async def once(reader, writer, server) -> None:
        await answer_ok(reader, writer, server)
        writer.close()

    async def test() -> None:
        server = await Server(once).start()
        pool = Pool(10)
        await post(pool, server.url())
        await asyncio.sleep(0.1)
        assert await post(pool, server.url()) == b'{"ok": true}'
        assert server.connections == 2
        await pool.close()
        await server.stop()

    run(test)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no openssl to make a test certificate: {exc}")
    return cert, key


def test_https_checks_the_certificate_against_the_name(certificate) -> None:
    cert, key = certificate

    async def test() -> None:
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        served.load_cert_chain(cert, key)
        server = await Server(answer_ok).start(tls=served)
        trusting = ssl.create_default_context()
        trusting.load_verify_locations(cert)
        pool = Pool(10, tls=trusting)
        url = f"https://localhost:{server.port}/v1/chat/completions"
        assert await post(pool, url) == b'{"ok": true}'
        assert await post(pool, url) == b'{"ok": true}'
        assert server.connections == 1
        assert f"\r\nhost: localhost:{server.port}\r\n" in server.requests[0].decode()
        # The certificate names localhost, not 127.0.0.1; and the system's
        # authorities do not know it at all.
        with pytest.raises(UpstreamUnreachable) as caught:
            await post(pool, f"https://127.0.0.1:{server.port}/v1")
        assert "certificate" in (caught.value.reason or "")
        with pytest.raises(UpstreamUnreachable):
            await post(Pool(10), url)
        await pool.close()
        await server.stop()

    run(test)
