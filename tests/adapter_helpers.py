"""Driving a provider adapter directly: its decoder fed in cuts, its requests
sent over real HTTP (to the mock provider) and its streams read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from proxy.providers.base import ProviderAdapter, StreamDecoder, UpstreamRequest

GOLDEN = Path(__file__).parent / "golden"


def golden(provider: str, name: str) -> Any:
    """The golden cases ``tests/golden/<provider>/<name>.json``."""
    return json.loads((GOLDEN / provider / f"{name}.json").read_text())


def decode_in_cuts(decoder: StreamDecoder, data: bytes, cut: int) -> list[dict[str, Any]]:
    """Everything ``decoder`` makes of ``data`` fed ``cut`` bytes at a time, then finished."""
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(data), cut):
        chunks += decoder.feed(data[start : start + cut])
    return chunks + decoder.finish()


def send(
    request: UpstreamRequest, client: httpx.Client | None = None, **headers: str
) -> httpx.Response:
    """``request`` sent as the gateway would send it (plus ``headers``)."""
    return (client or httpx).request(
        request.method,
        request.url,
        headers={**request.headers, **headers},
        content=request.body,
        timeout=10,
    )


def stream_over_http(
    adapter: ProviderAdapter,
    request: UpstreamRequest,
    *,
    model: str = "route-model",
    chunk_size: int = 5,
    client: httpx.Client | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], Any]:
    """A streamed answer to ``request``, decoded as it arrives in small reads:
    the canonical chunks and the usage."""
    decoder = adapter.stream_decoder(model=model)
    chunks: list[dict[str, Any]] = []
    with (client or httpx).stream(
        request.method,
        request.url,
        headers={**request.headers, **(headers or {})},
        content=request.body,
        timeout=10,
    ) as response:
        assert response.status_code == 200, response.read()
        content_type = response.headers["content-type"].split(";")[0]
        assert content_type == adapter.stream_content_type
        for piece in response.iter_raw(chunk_size=chunk_size):
            chunks += decoder.feed(piece)
    return chunks + decoder.finish(), decoder.usage
