"""Response guardrails on the Responses API (``/v1/responses``): its output text
and function calls, whole and streamed, including the events that repeat the
whole text once it is done."""

from __future__ import annotations

import json

import openai
import pytest

from governance import services
from tests.ledger_helpers import new_tag, record_tagged

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
SPLIT = ["Your key is AKIAIOSF", "ODNN7EXAMPLE and", " that is all."]
REDACTED = "Your key is [SECRET:aws_access_key] and that is all."
TOOLS = [
    {
        "type": "function",
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
]


def response_policy(demo, action: str) -> None:
    services.guardrail_policy_create(
        name="answers",
        owner=demo.team,
        direction="response",
        detectors={"aws_access_key": action, "email": action},
    )
    demo.sync()


def test_output_text_is_redacted(demo, celery_worker):
    response_policy(demo, "redact")
    demo.mock.add_rule(answer=SPLIT)
    tag = new_tag()
    response = demo.openai().responses.create(
        model="gpt-4o-mini", input="my key?", extra_headers={"x-request-id": tag}
    )
    assert response.output_text == REDACTED
    assert record_tagged(tag).guardrail_flags == ["response:redact:aws_access_key"]


def test_a_blocked_secret_in_output_text_becomes_a_400(demo):
    response_policy(demo, "block")
    demo.mock.add_rule(answer=SPLIT)
    with pytest.raises(openai.BadRequestError) as caught:
        demo.openai().responses.create(model="gpt-4o-mini", input="my key?")
    assert caught.value.code == "guardrail_violation"
    assert AWS_KEY not in caught.value.response.text


def test_a_secret_split_across_streamed_text_deltas_is_redacted_in_every_event(demo):
    response_policy(demo, "redact")
    demo.mock.add_rule(answer=SPLIT, inter_token_ms=30)
    deltas, events = [], []
    with demo.openai().responses.create(model="gpt-4o-mini", input="my key?", stream=True) as s:
        for event in s:
            events.append(event)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
    assert "".join(deltas) == REDACTED
    done = next(e for e in events if e.type == "response.output_text.done")
    completed = next(e for e in events if e.type == "response.completed")
    assert done.text == REDACTED
    assert completed.response.output_text == REDACTED
    assert not any(AWS_KEY[:8] in event.model_dump_json() for event in events)


def test_function_call_arguments_are_redacted_whole_and_streamed(demo):
    response_policy(demo, "redact")
    fragments = ['{"q": "mail jane@exa', "mple.com the key AKIAIO", 'SFODNN7EXAMPLE"}']
    expected = {"q": "mail [EMAIL] the key [SECRET:aws_access_key]"}
    demo.mock.add_rule(tool_arguments=fragments, inter_token_ms=30)
    whole = demo.openai().responses.create(model="gpt-4o-mini", input="look up", tools=TOOLS)
    assert json.loads(whole.output[0].arguments) == expected
    deltas, events = [], []
    with demo.openai().responses.create(
        model="gpt-4o-mini", input="look up", tools=TOOLS, stream=True
    ) as stream:
        for event in stream:
            events.append(event)
            if event.type == "response.function_call_arguments.delta":
                deltas.append(event.delta)
    assert json.loads("".join(deltas)) == expected
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == expected
    completed = next(e for e in events if e.type == "response.completed")
    assert json.loads(completed.response.output[0].arguments) == expected
    assert not any("AKIA" in e.model_dump_json() or "jane@" in e.model_dump_json() for e in events)


def test_a_blocked_secret_ends_a_responses_stream_with_an_error(demo):
    response_policy(demo, "block")
    demo.mock.add_rule(answer=["Sure. ", *SPLIT], inter_token_ms=30)
    seen = []
    with pytest.raises(openai.APIError) as caught:
        with demo.openai().responses.create(
            model="gpt-4o-mini", input="my key?", stream=True
        ) as stream:
            for event in stream:
                seen.append(event.model_dump_json())
    assert "aws_access_key" in str(caught.value)
    assert "AKIA" not in "".join(seen)


def test_an_answer_without_findings_is_relayed_as_it_came(demo):
    response_policy(demo, "block")
    demo.mock.add_rule(answer="Write to ops at example dot com.")
    response = demo.openai().responses.create(model="gpt-4o-mini", input="who?")
    assert response.output_text == "Write to ops at example dot com."
