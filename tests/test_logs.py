"""Logs: one JSON line per inference request with its request id, and never a
secret in any log line."""

from __future__ import annotations

import io
import json
import logging
import time

from gateway_project.logs import JsonFormatter, SecretFilter
from tests.ledger_helpers import new_tag

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def access_lines(gateway, tag: str, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [
            json.loads(line)
            for line in gateway.log_path.read_text().splitlines()
            if line.startswith("{") and tag in line
        ]
        if lines:
            return lines
        time.sleep(0.1)
    return []


def test_each_request_is_one_json_line_with_its_request_id(demo):
    tag = new_tag()
    answer = demo.openai().chat.completions.with_raw_response.create(
        **CHAT, extra_headers={"x-request-id": tag}
    )
    assert answer.headers["x-request-id"] == tag
    [line] = access_lines(demo.gateway, tag)
    assert line["logger"] == "gateway.access"
    assert line["client_request_id"] == tag
    assert line["request_id"] == answer.headers["x-gateway-request-id"]
    assert line["status"] == 200
    assert line["endpoint"] == "chat_completions"
    assert line["team"] == "platform"
    assert line["provider"] == "mock" and line["served_model"] == "mock-gpt"
    assert line["output_tokens"] == 16
    assert line["ts"].endswith("Z") and "T" in line["ts"]


def test_a_refused_request_is_logged_without_the_key_it_sent(demo):
    tag = new_tag()
    wrong = "sk-gw-" + "x" * 40
    demo.gateway.client.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {wrong}", "x-request-id": tag},
    )
    [line] = access_lines(demo.gateway, tag)
    assert line["status"] == 401 and line["error_code"] == "invalid_api_key"
    text = demo.gateway.log_path.read_text()
    assert wrong not in text
    assert demo.key not in text
    assert "sk-mock-primary-0001" not in text


def _format(formatter: logging.Formatter, message: str, *args) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(SecretFilter())
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_credential_in_a_log_message_is_masked():
    for secret in (
        "sk-gw-abcdefghijklmnopqrstuvwxyz012345",
        "sk-ant-api03-abcdefghijklmnop",
        "AKIAIOSFODNN7EXAMPLE",
        "AIzaSyA1234567890abcdefghijklmnopqrstu",
    ):
        line = _format(logging.Formatter("%(message)s"), "calling with %s now", secret)
        assert secret not in line
        assert "[secret] now" in line
    line = _format(logging.Formatter("%(message)s"), "Authorization: Bearer abc.def.ghijklmnop")
    assert "abc.def" not in line


def test_ordinary_words_are_left_alone():
    line = _format(logging.Formatter("%(message)s"), "skipped 3 tasks for sk-1 (the ask-all flag)")
    assert line.strip() == "skipped 3 tasks for sk-1 (the ask-all flag)"


def test_the_json_format_is_one_object_per_line():
    line = _format(JsonFormatter(), "usage %d records", 3)
    record = json.loads(line)
    assert record["level"] == "warning" and record["message"] == "usage 3 records"
    assert line.count("\n") == 1
