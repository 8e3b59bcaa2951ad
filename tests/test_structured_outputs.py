"""A JSON schema for the answer crosses the front doors: OpenAI's
``response_format`` becomes Anthropic's ``output_config.format`` and back, and
the provider's JSON answer reaches the client intact, streamed or not."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "forecast", "schema": SCHEMA, "strict": True},
}
ASK = [{"role": "user", "content": "Forecast for Paris"}]


def test_the_openai_sdk_gets_json_fitting_its_schema_from_anthropic(claude):
    completion = claude.openai().chat.completions.create(
        model="claude-sonnet", messages=ASK, response_format=RESPONSE_FORMAT
    )
    assert json.loads(completion.choices[0].message.content) == {"city": "mock", "days": 1}
    [received] = claude.mock.requests()
    assert received["path"] == "/anthropic/v1/messages"
    assert received["body"]["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}
    }
    assert "response_format" not in received["body"]


def test_the_openai_sdk_streams_json_from_anthropic(claude):
    chunks = claude.openai().chat.completions.create(
        model="claude-sonnet", messages=ASK, response_format=RESPONSE_FORMAT, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert json.loads(text) == {"city": "mock", "days": 1}


def test_the_anthropic_sdk_gets_json_from_an_openai_provider(claude):
    message = claude.anthropic().messages.create(
        model="gpt-4o-mini",
        max_tokens=64,
        messages=ASK,
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
    )
    assert json.loads(message.content[0].text) == {"city": "mock", "days": 1}
    [received] = claude.mock.requests()
    assert received["path"] == "/v1/chat/completions"
    assert received["body"]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": True},
    }
    assert "output_config" not in received["body"]


def test_the_anthropic_sdk_sends_its_output_config_to_anthropic_as_it_is(claude):
    output_config = {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "low"}
    with claude.anthropic().messages.stream(
        model="claude-sonnet", max_tokens=64, messages=ASK, output_config=output_config
    ) as stream:
        final = stream.get_final_message()
    assert json.loads(final.content[0].text) == {"city": "mock", "days": 1}
    [received] = claude.mock.requests()
    assert received["body"]["output_config"] == output_config


def test_json_mode_without_a_schema_is_refused_for_anthropic_before_sending(claude):
    with pytest.raises(openai.BadRequestError) as caught:
        claude.openai().chat.completions.create(
            model="claude-sonnet", messages=ASK, response_format={"type": "json_object"}
        )
    assert caught.value.body["code"] == "unsupported_parameter"
    assert caught.value.body["param"] == "response_format"
    assert "json_schema" in caught.value.body["message"]
    assert claude.mock.requests() == []


@pytest.mark.parametrize(
    "output_config",
    ["json", {"format": {"type": "json_schema"}}, {"format": {"type": "regex", "schema": {}}}],
)
def test_a_malformed_output_config_is_a_400_in_anthropics_envelope(claude, output_config):
    answer = httpx.post(
        f"{claude.gateway.url}/anthropic/v1/messages",
        headers={"x-api-key": claude.key},
        json={
            "model": "gpt-4o-mini",
            "max_tokens": 8,
            "messages": ASK,
            "output_config": output_config,
        },
    )
    assert answer.status_code == 400
    body = answer.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "output_config" in body["error"]["message"]
    assert claude.mock.requests() == []


def test_the_mock_refuses_a_format_without_a_schema_as_anthropic_and_openai_do(claude):
    anthropic_answer = httpx.post(
        f"{claude.mock.url}/anthropic/v1/messages",
        json={
            "model": "mock-claude",
            "max_tokens": 8,
            "messages": ASK,
            "output_config": {"format": {"type": "json_schema"}},
        },
    )
    assert anthropic_answer.status_code == 400
    assert anthropic_answer.json()["error"]["message"] == (
        "output_config.format.schema: Field required"
    )
    openai_answer = httpx.post(
        f"{claude.mock.url}/v1/chat/completions",
        json={"model": "mock-gpt", "messages": ASK, "response_format": {"type": "json_schema"}},
    )
    assert openai_answer.status_code == 400
    assert openai_answer.json()["error"]["param"] == "response_format"
