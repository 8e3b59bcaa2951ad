"""The data plane's pipelined Redis client against a real Redis server, and
against servers that misbehave (one that never answers, one that hangs up)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import pytest
import redis
from django.conf import settings
from redis import exceptions as rx

from gateway_project.fast_redis import PipelinedRedis

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="a Redis server")


def key() -> str:
    return f"{settings.GATEWAY_REDIS_PREFIX}:test-fast:{uuid.uuid4().hex}"


def run(scenario):  # type: ignore[no-untyped-def]
    return asyncio.run(scenario())


@needs_redis
def test_concurrent_calls_share_one_connection_and_each_gets_its_own_reply():
    counter = key()

    async def scenario() -> tuple[list[int], int, int]:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        replies = await asyncio.gather(*(client.execute(("INCR", counter)) for _ in range(300)))
        first = client._protocol
        (total,) = await client.execute(("GET", counter))
        same = int(client._protocol is first)
        await client.execute(("DEL", counter))
        await client.aclose()
        return sorted(reply for (reply,) in replies), int(total), same

    values, total, same = run(scenario)
    assert values == list(range(1, 301))  # every increment answered once, to its own caller
    assert total == 300
    assert same == 1


@needs_redis
def test_several_commands_of_one_call_come_back_in_order_with_errors_in_place():
    name, text = key(), key()

    async def scenario() -> list:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        replies = await client.execute(
            ("SET", text, "not a number"),
            ("INCR", text),  # an error reply, not an exception
            ("INCRBY", name, 7),
            ("MGET", name, text, key()),
        )
        replies.append(await client.execute(("PING",)))  # the connection is still usable
        await client.execute(("DEL", name, text))
        await client.aclose()
        return replies

    stored, failed, added, values, pong = run(scenario)
    assert stored == b"OK"
    assert isinstance(failed, rx.ResponseError) and "not an integer" in str(failed)
    assert added == 7
    assert values == [b"7", b"not a number", None]
    assert pong == [b"PONG"]


@needs_redis
def test_a_script_the_server_lacks_is_sent_once_then_run_by_its_digest():
    script = f"return redis.call('INCRBY', KEYS[1], ARGV[1]) -- {uuid.uuid4().hex}"
    counter = key()
    sync = redis.Redis.from_url(settings.REDIS_URL)
    digest = hashlib.sha1(script.encode()).hexdigest()
    assert sync.script_exists(digest) == [False]

    async def scenario() -> list:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        first = await client.evalsha(script, digest, [counter], [5])  # NOSCRIPT, then EVAL
        (missing,) = await client.execute(("EVALSHA", uuid.uuid4().hex[:40], 0))
        second = await client.evalsha(script, digest, [counter], [5])
        await client.aclose()
        return [first, missing, second]

    first, missing, second = run(scenario)
    assert (first, second) == (5, 10)  # run once per call, although the first met NOSCRIPT
    assert isinstance(missing, rx.NoScriptError)
    assert sync.script_exists(digest) == [True]
    sync.delete(counter)


@needs_redis
def test_the_url_s_database_number_is_selected():
    base = settings.REDIS_URL.rsplit("/", 1)[0]
    name = key()

    async def scenario() -> None:
        client = PipelinedRedis(f"{base}/9", timeout=5)
        await client.execute(("SET", name, "in nine", "EX", 30))
        await client.aclose()

    run(scenario)
    assert redis.Redis.from_url(f"{base}/9").get(name) == b"in nine"
    assert redis.Redis.from_url(f"{base}/8").get(name) is None
    redis.Redis.from_url(f"{base}/9").delete(name)


@needs_redis
def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others():
    empty, name = key(), key()

    async def scenario() -> list:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        await client.execute(("SET", name, "mine", "EX", 30))
        blocked = asyncio.ensure_future(client.execute(("BLPOP", empty, "0.3")))
        await asyncio.sleep(0.05)
        blocked.cancel()  # its reply still comes, first, and must be dropped
        (value,) = await client.execute(("GET", name))
        (again,) = await client.execute(("GET", name))
        await client.aclose()
        return [value, again, blocked.cancelled()]

    assert run(scenario) == [b"mine", b"mine", True]


@needs_redis
def test_a_killed_connection_fails_its_callers_and_the_next_call_reconnects():
    empty = key()

    async def scenario() -> list:
        client = PipelinedRedis(settings.REDIS_URL, timeout=5)
        (ident,) = await client.execute(("CLIENT", "ID"))
        waiting = asyncio.ensure_future(client.execute(("BLPOP", empty, "2")))
        await asyncio.sleep(0.05)
        redis.Redis.from_url(settings.REDIS_URL).client_kill_filter(_id=ident)
        try:
            await waiting
            outcome = "answered"
        except rx.ConnectionError:
            outcome = "connection error"
        (new_ident,) = await client.execute(("CLIENT", "ID"))
        await client.aclose()
        return [outcome, new_ident != ident]

    assert run(scenario) == ["connection error", True]


class Silent(asyncio.Protocol):
    """A server that takes connections and never answers."""

    def data_received(self, data: bytes) -> None:
        pass


def test_a_server_that_never_answers_times_out_every_waiting_call():
    async def scenario() -> list:
        server = await asyncio.get_running_loop().create_server(Silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(client.execute(("GET", "x")) for _ in range(5)), return_exceptions=True
        )
        took = time.monotonic() - started
        server.close()
        await client.aclose()
        return [[type(outcome).__name__ for outcome in outcomes], took]

    names, took = run(scenario)
    assert names == ["TimeoutError"] * 5
    assert 0.2 <= took < 1.0  # within the timeout and a quarter of it, plus slack


def test_the_handshake_of_a_server_that_never_answers_times_out():
    async def scenario() -> str:
        server = await asyncio.get_running_loop().create_server(Silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/3", timeout=0.2)  # SELECT 3 first
        try:
            await client.execute(("GET", "x"))
            return "answered"
        except rx.TimeoutError:
            return "timeout"
        finally:
            server.close()

    assert run(scenario) == "timeout"


def test_nothing_listening_is_a_connection_error():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused

        async def scenario() -> str:
            client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=1)
            try:
                await client.execute(("PING",))
                return "answered"
            except rx.ConnectionError:
                return "connection error"

        assert run(scenario) == "connection error"


class Chatty(asyncio.Protocol):
    """A server that answers the handshake, then two PINGs for each one it gets."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.handshaken = False

    def data_received(self, data: bytes) -> None:
        replies = b"+PONG\r\n" if not self.handshaken else b"+PONG\r\n+PONG\r\n"
        self.handshaken = True
        self.transport.write(replies)  # type: ignore[attr-defined]


def test_a_reply_nobody_asked_for_drops_the_connection():
    async def scenario() -> list:
        server = await asyncio.get_running_loop().create_server(Chatty, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", timeout=1)
        first = await client.execute(("PING",))
        broken = client._protocol.broken  # type: ignore[union-attr]
        server.close()
        return [first, type(broken).__name__]

    assert run(scenario) == [[b"PONG"], "ConnectionError"]


@needs_redis
def test_a_client_used_from_a_new_event_loop_opens_a_new_connection():
    client = PipelinedRedis(settings.REDIS_URL, timeout=5)

    async def ping() -> list:
        return await client.execute(("PING",))

    assert run(ping) == [b"PONG"]
    assert run(ping) == [b"PONG"]  # the first loop, and its connection, are gone
