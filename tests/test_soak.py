"""The soak: a fixed rate for a long time, half the requests streamed,
governance on (a rate limit, a token limit and a budget on the key, all far
above the load): zero errors, flat memory, one usage record per request.

Runs only when ``GATEWAY_SOAK_SECONDS`` is set (``make reliability
RELIABILITY_ARGS="--soak 600"``); ``GATEWAY_SOAK_RATE`` is the rate
(requests a second, default 1,000).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import aiohttp
import pytest

from governance import services as governance
from keys import selectors
from keys.models import VirtualKey
from tests.conftest import gateway_env
from tests.fault_helpers import CHAT, error_code, wait_for_records
from tests.processes import GatewayProcess
from tests.reliability_report import add_row, statuses_text

SECONDS = float(os.environ.get("GATEWAY_SOAK_SECONDS", "0"))
RATE = int(os.environ.get("GATEWAY_SOAK_RATE", "1000"))

pytestmark = pytest.mark.skipif(not SECONDS, reason="the soak runs with GATEWAY_SOAK_SECONDS")


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the workers), in KiB."""
    total = 0
    for candidate in [pid, *children(pid)]:
        try:
            with open(f"/proc/{candidate}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return []


async def offer(url: str, key: str, tag: str, seconds: float, rate: int) -> Counter:
    """Open loop: request i leaves at start + i / rate, whatever the answers."""
    statuses: Counter = Counter()
    connector = aiohttp.TCPConnector(limit=512)
    timeout = aiohttp.ClientTimeout(total=30)
    total = int(seconds * rate)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int) -> None:
            stream = index % 2 == 1
            try:
                async with session.post(
                    f"{url}/v1/chat/completions",
                    json={**CHAT, "stream": stream},
                    headers={"authorization": f"Bearer {key}", "x-request-id": f"{tag}-{index}"},
                ) as response:
                    body = await response.read()
                    ok = response.status == 200 and (
                        not stream or body.rstrip().endswith(b"data: [DONE]")
                    )
                    statuses[
                        200 if ok else f"{response.status} {error_code(response.status, body)}"
                    ] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1

        started = time.monotonic()
        tasks = set()
        for index in range(total):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    return statuses


@pytest.mark.timeout(SECONDS * 2 + 300)
def test_a_long_run_at_a_fixed_rate_has_no_error_flat_memory_and_every_record(demo, celery_worker):
    key = VirtualKey.objects.get(name="platform-app")
    limit = RATE * int(SECONDS) * 10
    governance.rate_limit_create(owner=key, metric="requests", limit=limit, window_seconds=3600)
    governance.rate_limit_create(
        owner=key, metric="tokens", limit=limit * 1000, window_seconds=3600
    )
    governance.budget_create(owner=key.team, amount_micros=10**12, period="1d")
    demo.sync()
    gateway = GatewayProcess(gateway_env(GATEWAY_ENABLE_LOGGING="false"), workers=1)
    try:
        gateway.wait_for_revision(selectors.config_revision())
        tag = f"soak{int(time.time())}"
        memory: list[tuple[float, int]] = []

        async def run() -> Counter:
            async def sample() -> None:
                started = time.monotonic()
                while True:
                    memory.append((time.monotonic() - started, rss_kib(gateway.process.pid)))
                    await asyncio.sleep(5)

            sampler = asyncio.create_task(sample())
            try:
                return await offer(gateway.url, demo.key, tag, SECONDS, RATE)
            finally:
                sampler.cancel()

        started = time.monotonic()
        statuses = asyncio.run(run())
        elapsed = time.monotonic() - started
        total = sum(statuses.values())
        # Requests that got an HTTP answer have a record; a connection error
        # may have never reached the gateway.
        answered = sum(n for status, n in statuses.items() if str(status)[0].isdigit())
        stored = wait_for_records(tag, answered, timeout=60)
        # Memory after the warm-up (first tenth) against the end.
        warm = [kib for at, kib in memory if at >= SECONDS / 10] or [memory[-1][1]]
        growth = (warm[-1] - warm[0]) / warm[0]
        add_row(
            "Soak",
            f"{SECONDS:.0f} s at {RATE}/s offered, half streamed, governance on "
            "(requests and tokens limits, a budget)",
            requests=total,
            client_saw=f"{statuses_text(statuses)}; achieved {total / elapsed:.0f}/s; "
            f"RSS {warm[0] // 1024}→{warm[-1] // 1024} MiB after warm-up ({growth:+.1%})",
            lost=f"{max(0, answered - stored)} of {answered} usage records of answered requests",
        )
        assert statuses == {200: total}
        assert stored >= answered  # (a request the client gave up on has one too)
        assert growth < 0.2
    finally:
        gateway.close()
