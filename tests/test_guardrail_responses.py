"""Guardrails on answers, whole and streamed, through both front doors and both
strategies (the provider's own format relayed, or translated)."""

from __future__ import annotations

import re

import anthropic
import httpx
import openai
import pytest

from governance import services
from tests.ledger_helpers import new_tag, record_tagged

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
# The key cut across two streamed deltas (and the mock's writes, 30 ms apart).
SPLIT = ["Your key is AKIAIOSF", "ODNN7EXAMPLE and", " that is all."]
REDACTED = "Your key is [SECRET:aws_access_key] and that is all."


def answer_with(demo, answer, **behaviour) -> None:
    demo.mock.add_rule(answer=answer, **behaviour)


def response_policy(demo, action: str, detectors=("aws_access_key",)) -> None:
    services.guardrail_policy_create(
        name="answers",
        owner=demo.team,
        direction="response",
        detectors=dict.fromkeys(detectors, action),
    )
    demo.sync()


def openai_stream(demo, model: str, tag: str | None = None) -> list[str]:
    stream = demo.openai().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "what is my key?"}],
        stream=True,
        extra_headers={"x-request-id": tag} if tag else None,
    )
    return [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]


def anthropic_stream(demo, model: str) -> list[str]:
    with demo.anthropic().messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "what is my key?"}]
    ) as stream:
        return list(stream.text_stream)


def test_a_whole_answer_is_redacted_before_the_client_sees_it(demo, celery_worker):
    response_policy(demo, "redact")
    answer_with(demo, f"Your key is {AWS_KEY} and that is all.")
    tag = new_tag()
    completion = demo.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "what is my key?"}],
        extra_headers={"x-request-id": tag},
    )
    assert completion.choices[0].message.content == REDACTED
    assert completion.usage.completion_tokens == 8  # the provider's usage, untouched
    assert record_tagged(tag).guardrail_flags == ["response:redact:aws_access_key"]


def test_a_whole_answer_with_a_blocked_secret_becomes_a_400_in_anthropics_envelope(claude):
    response_policy(claude, "block")
    answer_with(claude, f"Your key is {AWS_KEY}.")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.anthropic().messages.create(
            model="claude-sonnet", max_tokens=64, messages=[{"role": "user", "content": "key?"}]
        )
    assert "aws_access_key" in caught.value.body["error"]["message"]
    assert AWS_KEY not in caught.value.response.text


def test_a_flagged_answer_is_relayed_unchanged_and_marked_in_the_log(demo, celery_worker):
    response_policy(demo, "flag", detectors=("email",))
    answer_with(demo, "Write to jane@example.com today.")
    tag = new_tag()
    completion = demo.openai().chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "who?"}],
        extra_headers={"x-request-id": tag},
    )
    assert completion.choices[0].message.content == "Write to jane@example.com today."
    assert record_tagged(tag).guardrail_flags == ["response:flag:email"]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_a_secret_split_across_stream_chunks_is_redacted_for_openai_clients(
    claude, model, celery_worker
):
    # gpt-4o-mini: OpenAI's bytes relayed; claude-sonnet: Anthropic's events translated.
    response_policy(claude, "redact")
    answer_with(claude, SPLIT, inter_token_ms=30)
    tag = new_tag()
    deltas = openai_stream(claude, model, tag)
    assert "".join(deltas) == REDACTED
    assert not any("AKIA" in delta or "EXAMPLE" in delta for delta in deltas)
    record = record_tagged(tag)
    assert record.guardrail_flags == ["response:redact:aws_access_key"]
    assert record.output_tokens == 3


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o-mini"])
def test_a_secret_split_across_stream_chunks_is_redacted_for_anthropic_clients(claude, model):
    # claude-sonnet: Anthropic's events relayed; gpt-4o-mini: OpenAI's chunks translated.
    response_policy(claude, "redact")
    answer_with(claude, SPLIT, inter_token_ms=30)
    deltas = anthropic_stream(claude, model)
    assert "".join(deltas) == REDACTED
    assert not any("AKIA" in delta for delta in deltas)


def raw_anthropic_stream(demo) -> list[str]:
    response = httpx.post(
        f"{demo.gateway.url}/anthropic/v1/messages",
        headers={"x-api-key": demo.key, "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-sonnet",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "key?"}],
        },
        timeout=20,
    )
    # Ids differ from one answer to the next; nothing else may.
    return [re.sub(r"msg_[A-Za-z0-9]+", "msg_", event) for event in response.text.split("\n\n")]


def test_a_redacted_stream_keeps_every_other_event_byte_for_byte(claude):
    answer_with(claude, SPLIT, inter_token_ms=30)
    plain = raw_anthropic_stream(claude)
    response_policy(claude, "redact")
    guarded = raw_anthropic_stream(claude)
    assert len(guarded) == len(plain)
    changed = [(a, b) for a, b in zip(plain, guarded, strict=True) if a != b]
    assert [b.split("\n", 1)[0] for _, b in changed] == ["event: content_block_delta"] * 2
    assert "".join(changed[0][1].split("\n")[1:]).count("[SECRET:aws_access_key]") == 1
    assert AWS_KEY[:8] not in "".join(guarded)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_a_blocked_secret_ends_an_openai_stream_with_an_error_event(claude, model, celery_worker):
    response_policy(claude, "block")
    answer_with(claude, ["Sure. ", *SPLIT], inter_token_ms=30)
    tag = new_tag()
    seen: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        stream = claude.openai().chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "key?"}],
            stream=True,
            extra_headers={"x-request-id": tag},
        )
        for chunk in stream:
            if chunk.choices:
                seen.append(chunk.choices[0].delta.content or "")
    assert "aws_access_key" in str(caught.value)
    assert "AKIA" not in "".join(seen)
    record = record_tagged(tag)
    assert record.error_code == "guardrail_violation"
    assert record.guardrail_flags == ["response:block:aws_access_key"]


def test_a_blocked_secret_ends_an_anthropic_stream_with_an_error_event(claude):
    response_policy(claude, "block")
    answer_with(claude, SPLIT, inter_token_ms=30)
    with pytest.raises(anthropic.APIError) as caught:
        anthropic_stream(claude, "claude-sonnet")
    assert "aws_access_key" in str(caught.value)


def test_a_long_answer_streams_on_while_it_is_checked(demo):
    response_policy(demo, "redact", detectors=("secrets", "personal_data"))
    words = [f" word{i}" for i in range(200)]
    answer_with(demo, words)
    deltas = openai_stream(demo, "gpt-4o-mini")
    assert "".join(deltas) == "".join(words)
    # Held back by a small window only, not to the end: most deltas left one by one.
    assert len([delta for delta in deltas if delta]) > 150


def test_a_request_only_policy_leaves_answers_untouched(demo):
    services.guardrail_policy_create(
        name="inbound", direction="request", detectors={"aws_access_key": "block"}
    )
    demo.sync()
    answer_with(demo, SPLIT)
    assert "".join(openai_stream(demo, "gpt-4o-mini")) == "".join(SPLIT)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_a_split_secret_deep_in_a_long_stream_is_redacted_while_the_rest_flows(claude, model):
    before = [f" word{i}" for i in range(60)]
    after = [f" more{i}" for i in range(60)]
    response_policy(claude, "redact", detectors=("secrets", "personal_data"))
    answer_with(claude, [*before, " key AKIAIO", "SFODNN7E", "XAMPLE then", *after])
    deltas = openai_stream(claude, model)
    expected = "".join(before) + " key [SECRET:aws_access_key] then" + "".join(after)
    assert "".join(deltas) == expected
    assert not any("AKIA" in delta for delta in deltas)
