"""Shared pieces of the governance tests: firing many requests at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp


def wait_for_fresh_window(window_seconds: int, needed: float = 30.0) -> None:
    """Sleep past a window boundary if fewer than ``needed`` seconds remain in it."""
    remaining = window_seconds - time.time() % window_seconds
    if remaining < needed:
        time.sleep(remaining + 0.05)


async def _fire(urls: list[str], key: str, count: int, body: dict, concurrency: int) -> Counter:
    statuses: Counter = Counter()
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(index: int) -> None:
            async with gate:
                url = urls[index % len(urls)]
                async with session.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {key}"},
                ) as response:
                    await response.read()
                    statuses[response.status] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return statuses


def fire(urls: list[str], key: str, count: int, body: dict, concurrency: int = 200) -> Counter:
    """Send ``count`` requests spread over ``urls``; count the statuses."""
    return asyncio.run(_fire(urls, key, count, body, concurrency))
