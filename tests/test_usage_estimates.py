"""When a stream ends without the provider's usage, the gateway counts it
itself and marks the record as estimated."""

from __future__ import annotations

import httpx

from proxy.tokens import count_messages, count_text
from tests.ledger_helpers import new_tag, record_tagged

MESSAGES = [{"role": "user", "content": "Count slowly to ten"}]


def test_the_tokenizer_counts_like_cl100k():
    assert count_text("Hello world, this is a test.") == 8
    assert count_messages(MESSAGES) == 8  # "user Count slowly to ten" + 3


def test_a_stream_cut_short_is_recorded_with_estimated_usage(demo, celery_worker):
    demo.mock.add_rule(stall_after_tokens=3)
    tag = new_tag()
    with httpx.stream(
        "POST",
        f"{demo.gateway.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
        headers={"authorization": f"Bearer {demo.key}", "x-request-id": tag},
        timeout=20,
    ) as response:
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if received.count(b"data: ") >= 4:  # the role chunk and three tokens
                break
    record = record_tagged(tag)
    assert record.client_disconnected
    assert record.usage_estimated
    assert record.input_tokens == count_messages(MESSAGES)
    assert record.output_tokens == 4  # one per streamed delta, the role chunk included
