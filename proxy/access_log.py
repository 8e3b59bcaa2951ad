"""The access log: one JSON line per inference request, on standard output.

Lines are the request's usage record (ids, caller, provider and model,
status, tokens, cost, timings; never a key or message content) behind a UTC
time stamp (``ts``), the team and the endpoint. They bypass ``logging`` (a handler per line
costs more than the line) and are written in batches: a background task
flushes every quarter of a second, shutdown flushes what is left.
``GATEWAY_ENABLE_LOGGING=false`` turns the log off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import orjson

FLUSH_SECONDS = 0.25
MAX_PENDING = 512


class AccessLog:
    """This process's pending access-log lines."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self._task: asyncio.Task[None] | None = None
        # The time stamp's text up to the second, for the current second.
        self._second = -1
        self._stamp = ""

    def write(self, entry: dict[str, Any], *, endpoint: str, team: str) -> None:
        # The record's own JSON behind a fixed head: no copy of the record,
        # except to leave out message content (teams that keep it).
        if "content" in entry:
            entry = {name: value for name, value in entry.items() if name != "content"}
        moment = entry["time"]
        second = int(moment)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        head = (
            f'{{"ts":"{self._stamp}.{int(moment * 1000) % 1000:03d}Z",'
            f'"level":"info","logger":"gateway.access","endpoint":"{endpoint}","team":'
        )
        self.pending.append(head.encode() + orjson.dumps(team) + b"," + orjson.dumps(entry)[1:])
        if len(self.pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        data = b"\n".join(self.pending) + b"\n"
        self.pending = []
        with contextlib.suppress(OSError):  # a closed stdout must not fail requests
            os.write(sys.stdout.fileno(), data)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="access-log")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.flush()


access_log = AccessLog()
