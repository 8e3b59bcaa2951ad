"""The mock's further wire formats, each a module of its own.

Each entry takes the server's shared handlers (``server._Routes``: request
recording, behaviour rules, failure injection) and returns the
``(method, path, handler)`` triples it serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from proxy.mock_provider import azure, bedrock, cohere, gemini, openai_more

if TYPE_CHECKING:
    from aiohttp import web

Endpoints = list[tuple[str, str, Callable[[Any], Awaitable["web.StreamResponse"]]]]

WIRE_FORMATS: list[Callable[[Any], Endpoints]] = [
    azure.endpoints,
    bedrock.endpoints,
    cohere.endpoints,
    gemini.endpoints,
    openai_more.endpoints,
]
