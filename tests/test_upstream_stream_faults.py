"""Upstream faults inside an answer: a stream that stalls, a malformed event
stream, an answer larger than allowed. Each ends in a clear error, in bounded
time, and the gateway serves the next request."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from keys import services
from tests.reliability_report import add_row

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def next_request_is_served(demo) -> None:
    demo.mock.reset()
    assert demo.openai().chat.completions.create(**CHAT).choices


def test_a_stream_stalling_mid_way_ends_with_an_error_event_not_a_hang(demo):
    services.provider_update(provider=demo.provider, options={"read_timeout": "1"})
    demo.sync()
    demo.mock.add_rule(match={}, stall_after_tokens=3)
    started = time.monotonic()
    with httpx.Client(base_url=demo.gateway.url, timeout=15) as client:
        response = client.post(
            "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"authorization": f"Bearer {demo.key}"},
        )
    elapsed = time.monotonic() - started
    assert response.status_code == 200  # the stream had begun
    events = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert '"content":"word0"' in response.text.replace(" ", "")
    assert '"error"' in events[-1]
    assert elapsed < 5
    next_request_is_served(demo)
    add_row(
        "Upstream",
        "a stream stalling after 3 tokens (read timeout 1 s)",
        requests=2,
        client_saw=f"the tokens sent, then an error event ending the stream after {elapsed:.1f} s",
        lost="nothing",
    )


def test_a_malformed_event_stream_ends_cleanly(demo):
    demo.mock.add_rule(match={}, malformed="sse")
    with httpx.Client(base_url=demo.gateway.url, timeout=15) as client:
        response = client.post(
            "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"authorization": f"Bearer {demo.key}"},
        )
    assert response.status_code in (200, 502)
    assert response.text  # an answer, not a dropped connection
    next_request_is_served(demo)
    add_row(
        "Upstream",
        "a malformed event stream (a non-JSON `data:` event)",
        requests=2,
        client_saw=f"{response.status_code}, the stream relayed to its end; next request served",
        lost="nothing",
    )


def test_an_answer_larger_than_allowed_is_a_502(demo):
    # The session gateway allows the default 64 MiB; the mock pads to 70 MB.
    demo.mock.add_rule(match={}, body_bytes=70 * 1024 * 1024)
    with pytest.raises(openai.InternalServerError) as caught:
        demo.openai().chat.completions.create(**CHAT)
    assert caught.value.status_code == 502
    next_request_is_served(demo)
    add_row(
        "Upstream",
        "a non-streamed answer of 70 MB (limit GATEWAY_MAX_RESPONSE_BYTES, 64 MiB)",
        requests=2,
        client_saw=f"502 `{caught.value.body['code']}`; next request served",
        lost="nothing",
    )
