"""The data plane's Redis client: one pipelined connection, nothing else.

Admission and settlement make one Redis round trip each per request (a Lua
script, sometimes with a cache read or write beside it). Through redis-py's
asyncio client that round trip cost more CPU than the script: a pool
checkout under a lock and a timeout, a health check, packing in Python and
a reply parser reading from a stream reader. This client keeps one
connection per event loop and lets every request write its commands to it
at once; Redis answers in order, so each reply goes to the oldest caller
still waiting. Packing and parsing are hiredis's (C).

It raises redis-py's own exceptions (``ConnectionError``, ``TimeoutError``;
error replies come back as ``ResponseError`` values in the result list), so
the outage handling (``governance.outage``) treats both clients alike. A
command that gets no answer within ``timeout`` seconds fails, and so does
everything queued behind it on that connection, which is closed; the next
call opens a new one. Each call is one round trip for
``gateway_backend_calls_total``; the connection's handshake (``AUTH``,
``SELECT``, ``PING``) is not counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis import exceptions as rx

from gateway_project.backend_calls import count


class _Batch:
    """The replies one call is waiting for."""

    __slots__ = ("deadline", "expected", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], expected: int, deadline: float) -> None:
        self.future = future
        self.expected = expected
        self.replies: list[Any] = []
        self.deadline = deadline


class _Protocol(asyncio.Protocol):
    def __init__(self, client: PipelinedRedis) -> None:
        self.client = client
        self.reader = hiredis.Reader(replyError=rx.ResponseError, protocolError=rx.ConnectionError)
        self.waiting: collections.deque[_Batch] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.broken: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except rx.ConnectionError as exc:  # not RESP: nothing after it can be trusted
                self.fail(exc)
                return
            if reply is False:
                return
            if not waiting:  # an answer nobody asked for
                self.fail(rx.ConnectionError("Redis sent an unexpected reply"))
                return
            batch = waiting[0]
            batch.replies.append(reply)
            if len(batch.replies) == batch.expected:
                waiting.popleft()
                if not batch.future.done():  # its caller may have been cancelled
                    batch.future.set_result(batch.replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(rx.ConnectionError(f"Redis closed the connection ({exc or 'end of stream'})"))
        if not self.closed.done():
            self.closed.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Fail every waiting call with ``error`` and drop the connection."""
        if self.broken is None:
            self.broken = error
        while self.waiting:
            batch = self.waiting.popleft()
            if not batch.future.done():
                batch.future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()

    def send(self, data: bytes, expected: int, deadline: float) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Batch(future, expected, deadline))
        self.transport.write(data)  # type: ignore[union-attr]
        return future

    def expire(self, now: float) -> bool:
        """Fail the connection if its oldest call is overdue; whether any call waits."""
        if not self.waiting:
            return False
        if self.waiting[0].deadline <= now:
            self.fail(rx.TimeoutError("Redis did not answer in time"))
            return False
        return True


class PipelinedRedis:
    """A minimal asynchronous Redis client over one pipelined connection.

    ``url`` is a ``redis://`` or ``rediss://`` URL (user, password and
    database number as redis-py reads them).
    """

    def __init__(self, url: str, *, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.tls = parts.scheme == "rediss"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        path = parts.path.strip("/")
        self.db = int(path) if path.isdigit() else 0
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order.

        An error reply is returned in its place as a ``ResponseError``
        (``NoScriptError`` for a script the server does not have); losing
        the connection or waiting longer than the timeout raises.
        """
        protocol = self._protocol
        loop = asyncio.get_running_loop()
        if protocol is None or protocol.broken is not None or self._loop is not loop:
            protocol = await self._connected(loop)
        count("redis")
        data = b"".join([hiredis.pack_command(command) for command in commands])
        future = protocol.send(data, len(commands), loop.time() + self.timeout)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.timeout / 4, self._watch)
        replies = await future
        for index, reply in enumerate(replies):
            if isinstance(reply, rx.ResponseError) and str(reply).startswith("NOSCRIPT"):
                replies[index] = rx.NoScriptError(str(reply))
        return replies

    async def call(self, *command: Any) -> Any:
        """One command's reply; an error reply is raised."""
        (reply,) = await self.execute(command)
        if isinstance(reply, rx.ResponseError):
            raise reply
        return reply

    async def evalsha(self, script: bytes | str, sha: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its digest, sending its text only if the server lacks it."""
        try:
            return await self.call("EVALSHA", sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            return await self.call("EVAL", script, len(keys), *keys, *args)

    def _watch(self) -> None:
        self._watchdog = None
        protocol = self._protocol
        if protocol is not None and self._loop is not None:
            if protocol.expire(self._loop.time()):
                self._watchdog = self._loop.call_later(self.timeout / 4, self._watch)

    async def _connected(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        if self._loop is not loop:  # a new event loop: the old connection is not usable
            if self._protocol is not None and self._protocol.transport is not None:
                with contextlib.suppress(RuntimeError):  # its loop may be closed already
                    self._protocol.transport.abort()
            self._protocol, self._connecting, self._watchdog = None, None, None
            self._loop = loop
        if self._connecting is None or self._connecting.done():
            self._connecting = loop.create_future()
            task = loop.create_task(self._connect(loop))
            task.add_done_callback(self._connect_done)
        # Every caller waits on the same attempt; a cancelled caller must not cancel it.
        return await asyncio.shield(self._connecting)

    def _connect_done(self, task: asyncio.Task[_Protocol]) -> None:
        future = self._connecting
        if future is None or future.done():
            return
        if task.cancelled():
            future.set_exception(rx.ConnectionError("connecting to Redis was cancelled"))
        elif task.exception() is not None:
            future.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            self._protocol = task.result()
            future.set_result(self._protocol)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        context = ssl.create_default_context() if self.tls else None
        try:
            async with asyncio.timeout(self.timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(self), self.host, self.port, ssl=context
                )
                await self._handshake(protocol, loop)
        except TimeoutError as exc:  # the builtin one, from asyncio.timeout
            raise rx.TimeoutError("connecting to Redis timed out") from exc
        except OSError as exc:
            raise rx.ConnectionError(f"cannot connect to Redis: {exc}") from exc
        return protocol

    async def _handshake(self, protocol: _Protocol, loop: asyncio.AbstractEventLoop) -> None:
        """Authenticate, select the database, and see the server answer.

        The ``PING`` matters even with nothing else to send: a server that
        is stopped (not gone) still has its connections accepted by the
        kernel, and a command written to one would run when the server
        resumes, after its caller gave up on it and counted it elsewhere.
        """
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            who = (self.username,) if self.username else ()
            commands.append(("AUTH", *who, self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        commands.append(("PING",))
        data = b"".join(hiredis.pack_command(command) for command in commands)
        for reply in await protocol.send(data, len(commands), loop.time() + self.timeout):
            if isinstance(reply, rx.ResponseError):
                error = rx.ConnectionError(f"Redis refused the handshake: {reply}")
                protocol.fail(error)
                raise error

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await protocol.closed
