"""Bad requests get a clear error in OpenAI's envelope, never a 500."""

from __future__ import annotations

import openai
import orjson
import pytest


def post(demo, body: bytes | None = None, **kwargs):
    headers = {"authorization": f"Bearer {demo.key}", "content-type": "application/json"}
    return demo.gateway.client.post("/v1/chat/completions", content=body, headers=headers, **kwargs)


def assert_openai_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"text"',
        b"\xff\xfe\x00",
        b'{"model": "gpt-4o-mini", "messages": [',
        b"null",
    ],
)
def test_it_refuses_a_body_that_is_not_a_json_object(demo, body):
    response = post(demo, body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": 42, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "gpt-4o-mini"}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": []}', "messages"),
        (b'{"model": "gpt-4o-mini", "messages": ["hi"]}', "messages[0]"),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "stream": "yes"}', "stream"),
    ],
)
def test_it_names_the_wrong_parameter(demo, body, param):
    error = assert_openai_error(post(demo, body), 400, "invalid_request")
    assert error["param"] == param


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"prompt": [None]}, "prompt"),
        ("/v1/completions", {"prompt": ["hi", 3]}, "prompt"),
        ("/v1/completions", {"prompt": [-1]}, "prompt"),
        ("/v1/embeddings", {"input": [[1, None]]}, "input"),
        ("/v1/chat/completions", {"tools": ["search"]}, "tools[0]"),
        (
            "/v1/chat/completions",
            {"tools": [{"type": "function", "function": 1}]},
            "tools[0].function",
        ),
    ],
)
def test_it_refuses_an_array_element_of_the_wrong_type(demo, path, body, param):
    payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **body}
    headers = {"authorization": f"Bearer {demo.key}"}
    response = demo.gateway.client.post(path, json=payload, headers=headers)
    error = assert_openai_error(response, 400, "invalid_request")
    assert error["param"] == param
    assert demo.mock.request_count() == 0


HI = {"role": "user", "content": "hi"}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
PART = "messages[0].content[0]"


@pytest.mark.parametrize(
    ("messages", "extra", "param"),
    [
        ([{"role": "user", "content": [{"type": "text", "text": None}]}], {}, PART + ".text"),
        ([{"role": "user", "content": [{"text": "hi"}]}], {}, "messages[0].content[0]"),
        ([{"role": "user", "content": ["hi"]}], {}, "messages[0].content[0]"),
        ([{"role": "user", "content": 7}], {}, "messages[0].content"),
        ([{"role": "tool", "content": "ok"}], {}, "messages[0].tool_call_id"),
        (
            [{"role": "assistant", "tool_calls": [{**CALL, "id": 1}]}, HI],
            {},
            "messages[0].tool_calls[0].id",
        ),
        ([HI], {"stop": [None]}, "stop"),
        ([HI], {"stop": 3}, "stop"),
    ],
)  # fmt: skip
def test_it_refuses_a_message_part_a_tool_call_or_a_stop_of_the_wrong_shape(
    demo, messages, extra, param
):
    """Refused before any provider is asked, so that no translation sends on
    what the provider would refuse in its own words (or misread)."""
    body = {"model": "gpt-4o-mini", "messages": messages, **extra}
    error = assert_openai_error(post(demo, orjson.dumps(body)), 400, "invalid_request")
    assert error["param"] == param
    assert demo.mock.request_count() == 0


def test_an_unknown_model_is_a_404_the_sdk_understands(demo):
    with pytest.raises(openai.NotFoundError) as caught:
        demo.openai().chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"
    assert demo.mock.request_count() == 0


def test_an_unknown_provider_prefix_is_a_404(demo):
    response = post(
        demo, b'{"model": "nowhere/gpt", "messages": [{"role": "user", "content": "hi"}]}'
    )
    assert_openai_error(response, 404, "model_not_found")


def test_a_body_over_the_limit_is_a_413(demo):
    big = (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        + b"x" * (5 * 1024 * 1024)
        + b'"}]}'
    )
    assert_openai_error(post(demo, big), 413, "request_too_large")
    assert demo.mock.request_count() == 0


def test_a_body_over_the_limit_without_a_declared_length_is_a_413(demo):
    def chunks():
        for _ in range(6):
            yield b"x" * (1024 * 1024)

    assert_openai_error(post(demo, chunks()), 413, "request_too_large")


def test_the_wrong_method_is_a_405(demo):
    response = demo.gateway.client.get(
        "/v1/chat/completions", headers={"authorization": f"Bearer {demo.key}"}
    )
    assert_openai_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]},
        {"messages": [{"role": "user", "content": [None]}]},
        {"system": [{"type": "text", "text": True}]},
    ],
)
def test_it_refuses_a_content_block_of_the_wrong_shape_in_anthropics_envelope(demo, body):
    payload = {
        "model": "gpt-4o-mini",
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}],
        **body,
    }
    response = demo.gateway.client.post(
        "/anthropic/v1/messages", json=payload, headers={"x-api-key": demo.key}
    )
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert demo.mock.request_count() == 0
