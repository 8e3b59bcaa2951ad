"""SIGTERM drains a gateway: readiness goes off at once, streams in flight
finish with every byte, new work is refused once the socket closes, every
usage record is stored, and the process exits 0 — with one worker process
or several."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from governance.models import RequestRecord
from tests.conftest import gateway_env
from tests.processes import GatewayProcess

STREAMS = 20
TOKENS = 30
EXPECTED = " ".join(f"word{i}" for i in range(TOKENS))


def read_stream(url: str, key: str, tag: str, started: threading.Event, out: dict) -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "tell me"}],
        "stream": True,
    }
    headers = {"authorization": f"Bearer {key}", "x-request-id": tag}
    chunks: list[bytes] = []
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
            out[tag] = {"status": r.status_code}
            for chunk in r.iter_raw():
                chunks.append(chunk)
                started.set()
    out[tag]["body"] = b"".join(chunks)


def text_of(body: bytes) -> str:
    import json

    text = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_twenty_streams_finish_and_loses_no_record(demo, celery_worker, workers):
    # Each stream takes about three seconds; the socket closes after one.
    demo.mock.add_rule(output_tokens=TOKENS, inter_token_ms=100)
    server = GatewayProcess(
        gateway_env(GATEWAY_DRAIN_DELAY_SECONDS="1", GATEWAY_LEDGER_FLUSH_SECONDS="30"),
        workers=workers,
    )
    prefix = f"drain-{workers}-{time.monotonic_ns()}"
    try:
        revision = demo.gateway.client.get("/readyz").json()["config_revision"]
        for _ in range(4 * workers):
            server.wait_for_revision(revision)
        out: dict[str, dict] = {}
        events = [threading.Event() for _ in range(STREAMS)]
        threads = [
            threading.Thread(
                target=read_stream, args=(server.url, demo.key, f"{prefix}-{n}", events[n], out)
            )
            for n in range(STREAMS)
        ]
        for thread in threads:
            thread.start()
        for event in events:
            assert event.wait(30), "a stream did not start"

        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"]["process"] == "draining"

        time.sleep(1.5)  # past the drain delay: the socket is closed
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{server.url}/v1/chat/completions", json={}, timeout=5)

        for thread in threads:
            thread.join(timeout=60)
        assert server.process.wait(timeout=60) == 0
    finally:
        server.close()

    assert len(out) == STREAMS
    for tag, result in out.items():
        assert result["status"] == 200, tag
        assert result["body"].endswith(b"data: [DONE]\n\n"), tag
        assert text_of(result["body"]) == EXPECTED, tag
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stored = RequestRecord.objects.filter(client_request_id__startswith=prefix).count()
        if stored >= STREAMS:
            break
        time.sleep(0.2)
    assert stored == STREAMS
    assert RequestRecord.objects.filter(
        client_request_id__startswith=prefix, status=200, output_tokens=TOKENS
    ).count() == STREAMS
