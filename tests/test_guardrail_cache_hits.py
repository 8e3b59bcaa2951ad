"""A cached answer passes the response guardrails in force for the caller when
it is served, not only those of the request that stored it."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from governance import services as governance
from keys import services
from tests.ledger_helpers import new_tag, record_tagged

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
ANSWER = f"Your key is {AWS_KEY} and that is all."
REDACTED = "Your key is [SECRET:aws_access_key] and that is all."
QUESTION = [{"role": "user", "content": "what is my key?"}]


def cache_on(demo) -> None:
    services.team_update(team=demo.team, cache_ttl_seconds=60)
    demo.sync()


def response_policy(demo, action: str, owner=None) -> None:
    governance.guardrail_policy_create(
        name=f"answers-{action}",
        owner=owner or demo.team,
        direction="response",
        detectors={"aws_access_key": action},
    )
    demo.sync()


def ask(demo, key: str | None = None, tag: str | None = None, **extra):
    raw = demo.openai(key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        extra_headers={"x-request-id": tag} if tag else None,
        **extra,
    )
    return raw.headers["x-gateway-cache"], raw.parse()


def test_an_entry_stored_before_a_policy_is_redacted_when_served_now(demo, celery_worker):
    cache_on(demo)
    demo.mock.add_rule(answer=ANSWER)
    result, first = ask(demo)
    assert (result, first.choices[0].message.content) == ("miss", ANSWER)
    response_policy(demo, "redact")
    tag = new_tag()
    result, again = ask(demo, tag=tag)
    assert (result, again.choices[0].message.content) == ("hit", REDACTED)
    assert demo.mock.request_count() == 1
    record = record_tagged(tag)
    assert record.cache_hit
    assert record.guardrail_flags == ["response:redact:aws_access_key"]


def test_a_hit_replayed_as_a_stream_carries_the_redacted_text(claude):
    cache_on(claude)
    claude.mock.add_rule(answer=ANSWER)
    ask(claude)
    response_policy(claude, "redact")
    stream = claude.openai().chat.completions.create(
        model="gpt-4o-mini", messages=QUESTION, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REDACTED
    claude.anthropic().messages.create(model="claude-sonnet", max_tokens=64, messages=QUESTION)
    with claude.anthropic().messages.stream(
        model="claude-sonnet", max_tokens=64, messages=QUESTION
    ) as replay:
        assert "".join(replay.text_stream) == REDACTED
    assert claude.mock.request_count() == 2  # one answer per front door, each then a hit


def test_a_hit_a_blocking_policy_now_forbids_is_refused_without_the_provider(claude, celery_worker):
    cache_on(claude)
    claude.mock.add_rule(answer=ANSWER)
    ask(claude)
    claude.anthropic().messages.create(model="claude-sonnet", max_tokens=64, messages=QUESTION)
    response_policy(claude, "block")
    tag = new_tag()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(claude, tag=tag)
    assert caught.value.code == "guardrail_violation"
    assert AWS_KEY not in caught.value.response.text
    with pytest.raises(anthropic.BadRequestError) as refused:
        claude.anthropic().messages.create(
            model="claude-sonnet", max_tokens=64, messages=QUESTION, stream=False
        )
    assert "aws_access_key" in refused.value.body["error"]["message"]
    assert claude.mock.request_count() == 2
    record = record_tagged(tag)
    assert record.error_code == "guardrail_violation"
    assert record.guardrail_flags == ["response:block:aws_access_key"]
    assert record.cost_micros == 0


def test_another_key_of_the_team_gets_the_entry_under_its_own_policy(demo):
    cache_on(demo)
    guarded, secret = services.virtual_key_create(name="platform-guarded", team=demo.team)
    response_policy(demo, "redact", owner=guarded)
    demo.mock.add_rule(answer=ANSWER)
    assert ask(demo)[1].choices[0].message.content == ANSWER  # stored by the unguarded key
    result, theirs = ask(demo, secret)
    assert (result, theirs.choices[0].message.content) == ("hit", REDACTED)
    result, mine = ask(demo)
    assert (result, mine.choices[0].message.content) == ("hit", ANSWER)
    assert demo.mock.request_count() == 1


def test_tool_call_arguments_of_a_hit_are_checked_too(demo):
    cache_on(demo)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "store",
                "parameters": {
                    "type": "object",
                    "properties": {"value": {"type": "string"}},
                    "required": ["value"],
                },
            },
        }
    ]
    demo.mock.add_rule(tool_arguments={"value": AWS_KEY})
    ask(demo, tools=tools)
    response_policy(demo, "redact")
    result, again = ask(demo, tools=tools)
    assert result == "hit"
    arguments = again.choices[0].message.tool_calls[0].function.arguments
    assert json.loads(arguments) == {"value": "[SECRET:aws_access_key]"}
