"""Steady load against a gateway while a test breaks something underneath it.

:class:`Load` sends chat completions (every other one streamed) from a
background thread until stopped, each with its own ``x-request-id`` under a
tag, and keeps what every request ended with: status, error code, time taken,
or the exception when there was no answer (a hung or reset connection).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass

import aiohttp
import orjson
from django.db.models import QuerySet

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@dataclass
class Outcome:
    status: int  # 0: no answer
    code: str
    seconds: float
    stream: bool
    error: str = ""
    request_id: str = ""  # the x-request-id sent
    ended: float = 0.0  # time.monotonic() when it ended

    def __post_init__(self) -> None:
        self.ended = time.monotonic()


def error_code(status: int, body: bytes) -> str:
    """The error code of an OpenAI error envelope ('' for an answer, '?' if not one)."""
    if status < 400:
        return ""
    try:
        error = orjson.loads(body)["error"]
        return str(error["code"] or error["type"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return "?"


class Load:
    """Requests from ``concurrency`` clients at a time until :meth:`stop`."""

    def __init__(
        self, url: str, key: str, *, concurrency: int = 8, timeout: float = 15.0, pause: float = 0
    ) -> None:
        self.url = url
        self.key = key
        self.concurrency = concurrency
        self.timeout = timeout
        self.pause = pause
        self.tag = uuid.uuid4().hex[:10]
        self.outcomes: list[Outcome] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.timeout + 10)

    def since(self, index: int) -> list[Outcome]:
        return self.outcomes[index:]

    def statuses(self, outcomes: list[Outcome] | None = None) -> Counter:
        return Counter(o.status for o in (self.outcomes if outcomes is None else outcomes))

    def first_success_after(self, moment: float) -> float:
        """Seconds from ``moment`` (monotonic) to the first 200 that ended after it."""
        ends = [o.ended for o in self.outcomes if o.status == 200 and o.ended > moment]
        return min(ends) - moment if ends else float("inf")

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until ``count`` more requests have ended."""
        target = len(self.outcomes) + count
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < target and time.monotonic() < deadline:
            time.sleep(0.05)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        counter = iter(range(10**9))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def client() -> None:
                while not self._stopping.is_set():
                    await self._one(session, next(counter))
                    if self.pause:
                        await asyncio.sleep(self.pause)

            await asyncio.gather(*(client() for _ in range(self.concurrency)))

    async def _one(self, session: aiohttp.ClientSession, index: int) -> None:
        stream = index % 2 == 1
        started = time.monotonic()
        request_id = f"{self.tag}-{index}"
        headers = {"authorization": f"Bearer {self.key}", "x-request-id": request_id}
        try:
            async with session.post(
                f"{self.url}/v1/chat/completions",
                json={**CHAT, "stream": stream},
                headers=headers,
            ) as response:
                body = await response.read()
                status = response.status
                if status == 200 and stream and not body.rstrip().endswith(b"data: [DONE]"):
                    status, code = 0, "truncated stream"
                else:
                    code = error_code(status, body)
                outcome = Outcome(status, code, time.monotonic() - started, stream, "", request_id)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = Outcome(0, "", time.monotonic() - started, stream, repr(exc), request_id)
        self.outcomes.append(outcome)


class TcpProxy:
    """A TCP relay to ``target`` that a test can cut (every connection reset,
    new ones refused) and restore: a server that stopped, as its clients see it."""

    def __init__(self, host: str, port: int) -> None:
        from tests.processes import free_port

        self.target = (host, port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.restore()

    def _call(self, coroutine) -> None:  # type: ignore[no-untyped-def]
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def start_worker(env: dict[str, str], *, quick_reclaim: bool = True) -> subprocess.Popen:
    """A real Celery worker with beat draining the usage stream (``env``: the
    gateway's, from ``tests.conftest.gateway_env``). ``quick_reclaim``: batches
    read before an outage of the database are taken up again half a second
    later instead of a minute."""
    reclaim = {"GATEWAY_LEDGER_CLAIM_IDLE_MS": "500"} if quick_reclaim else {}
    from tests.processes import ROOT

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "gateway_project",
            "worker",
            "-B",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "-s",
            str(ROOT / "var" / f"celerybeat-{uuid.uuid4().hex[:6]}"),
        ],
        cwd=ROOT,
        env={**os.environ, **env, **reclaim},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_records(tag: str, count: int, timeout: float = 60.0) -> int:
    """Until ``count`` usage records of ``tag`` are stored; how many are."""
    from governance.models import RequestRecord

    records = RequestRecord.objects.filter(client_request_id__startswith=tag)
    return wait_for_count(records, count, timeout)


def wait_for_count(records: QuerySet, count: int, timeout: float = 60.0) -> int:
    """Until the queryset ``records`` counts ``count``; what it counts."""
    deadline = time.monotonic() + timeout
    found = records.count()
    while found < count and time.monotonic() < deadline:
        time.sleep(0.25)
        found = records.count()
    return found
