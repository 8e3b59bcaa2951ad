"""A client that goes away mid-stream cancels the upstream request at once
(no orphaned stream burning tokens), and what was streamed is still
accounted."""

from __future__ import annotations

import socket
import time

import orjson

from tests.ledger_helpers import new_tag, record_tagged


def raw_stream_request(port: int, key: str, tag: str) -> socket.socket:
    body = orjson.dumps(
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "tell me a long story"}],
            "stream": True,
        }
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\nX-Request-Id: {tag}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    client = socket.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(head + body)
    return client


def test_a_client_leaving_mid_stream_cancels_the_upstream_within_100_ms(demo, celery_worker):
    demo.mock.add_rule(output_tokens=2000, inter_token_ms=10)
    tag = new_tag()
    client = raw_stream_request(demo.gateway.port, demo.key, tag)
    received = b""
    while received.count(b"data: ") < 5:
        received += client.recv(65536)
    assert demo.mock.control.get("/_mock/stats").json()["streams_open"] == 1
    client.close()
    left = time.monotonic()
    while demo.mock.control.get("/_mock/stats").json()["streams_open"]:
        assert time.monotonic() - left < 1.0, "the upstream stream outlived its client"
        time.sleep(0.005)
    assert time.monotonic() - left < 0.1

    record = record_tagged(tag)
    assert record.client_disconnected
    assert 0 < record.output_tokens < 2000
