"""The shared upstream HTTP client.

aiohttp rather than httpx on the hot path: relaying a small JSON answer on
one core, httpx's own transport managed ~600 requests/s here, aiohttp ~7,200
(see docs/performance.md). One pooled session per process (per event loop),
created on first use and closed at shutdown.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from gateway_project.fast_settings import settings
from keys.addresses import GuardedResolver

_session: aiohttp.ClientSession | None = None
# Upstream URLs, parsed once: a provider's few endpoints are asked again and again.
_urls: dict[str, URL] = {}
_session_loop: asyncio.AbstractEventLoop | None = None


def session() -> aiohttp.ClientSession:
    """The process's pooled client session, bound to the running loop."""
    global _session, _session_loop
    loop = asyncio.get_running_loop()
    if _session is None or _session.closed or _session_loop is not loop:
        connector = aiohttp.TCPConnector(
            limit=settings.GATEWAY_UPSTREAM_POOL_SIZE,
            limit_per_host=0,
            ttl_dns_cache=300,
            # Provider host names resolving into private networks are refused
            # at connect time (DNS rebinding), once per cached resolution.
            resolver=GuardedResolver(),
            keepalive_timeout=30,
        )
        _session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=settings.GATEWAY_UPSTREAM_TOTAL_TIMEOUT,
                sock_connect=settings.GATEWAY_UPSTREAM_CONNECT_TIMEOUT,
                sock_read=settings.GATEWAY_UPSTREAM_READ_TIMEOUT,
            ),
            # Upstream answers are relayed, not interpreted as cookies/redirects.
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent",),
            raise_for_status=False,
        )
        _session_loop = loop
    return _session


def parsed_url(url: str) -> URL:
    """``url`` as aiohttp's URL object, parsed on its first use only."""
    parsed = _urls.get(url)
    if parsed is None:
        if len(_urls) >= 4096:  # per-request URLs (say, with a query) must not pile up
            _urls.clear()
        parsed = _urls[url] = URL(url)
    return parsed


async def close() -> None:
    global _session
    if _session is not None and not _session.closed:
        await _session.close()
    _session = None
