"""The access log: one JSON line per inference request, on standard output.

Lines are the request's usage record (ids, caller, provider and model,
status, tokens, cost, timings; never a key or message content) with a time
stamp, the team and the endpoint. They bypass ``logging`` (a handler per line
costs more than the line) and are written in batches: a background task
flushes every quarter of a second, shutdown flushes what is left.
``GATEWAY_ENABLE_LOGGING=false`` turns the log off.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
from typing import Any

import orjson

FLUSH_SECONDS = 0.25
MAX_PENDING = 512


class AccessLog:
    """This process's pending access-log lines."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self._task: asyncio.Task[None] | None = None

    def write(self, entry: dict[str, Any], *, endpoint: str, team: str) -> None:
        stamp = dt.datetime.fromtimestamp(entry["time"], dt.UTC).isoformat(
            timespec="milliseconds"
        )
        line = {
            "ts": stamp,
            "level": "info",
            "logger": "gateway.access",
            "endpoint": endpoint,
            "team": team,
            **entry,
        }
        del line["time"]
        self.pending.append(orjson.dumps(line))
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
