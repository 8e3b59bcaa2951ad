"""Guardrails on requests: blocked, redacted before forwarding, or flagged in the log."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest
from django.urls import reverse

from governance import services
from keys.models import VirtualKey
from tests.ledger_helpers import new_tag, record_tagged

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "jane.doe@example.com"


def upstream_bodies(demo) -> str:
    """Everything that reached the mock provider, as one JSON text."""
    return orjson.dumps([entry["body"] for entry in demo.mock.requests()]).decode()


def ask(client, text: str, tag: str | None = None, **extra):
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-request-id": tag} if tag else None,
        **extra,
    )


def test_a_blocked_secret_gets_a_400_naming_the_rule_and_never_reaches_the_provider(
    demo, celery_worker
):
    services.guardrail_policy_create(name="no keys", detectors={"secrets": "block"})
    demo.sync()
    tag = new_tag()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(demo.openai(), f"my key is {AWS_KEY}, why does it fail?", tag)
    error = caught.value.body
    assert error["code"] == "guardrail_violation"
    assert "aws_access_key" in error["message"]
    assert AWS_KEY not in caught.value.response.text
    assert demo.mock.request_count() == 0
    record = record_tagged(tag)
    assert (record.status, record.error_code) == (400, "guardrail_violation")
    assert record.guardrail_flags == ["request:block:aws_access_key"]


def test_the_anthropic_front_door_refuses_in_anthropics_envelope(claude):
    services.guardrail_policy_create(name="no keys", detectors={"aws_access_key": "block"})
    claude.sync()
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.anthropic().messages.create(
            model="claude-sonnet",
            max_tokens=16,
            system=f"The deploy key is {AWS_KEY}.",
            messages=[{"role": "user", "content": "hello"}],
        )
    body = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "guardrail_violation" in body["error"]["message"]
    assert "aws_access_key" in body["error"]["message"]
    assert claude.mock.request_count() == 0


def test_redacted_text_reaches_the_provider_as_a_typed_placeholder(demo, celery_worker):
    services.guardrail_policy_create(
        name="pii", owner=demo.team, direction="request", detectors={"personal_data": "redact"}
    )
    demo.sync()
    tag = new_tag()
    answer = ask(demo.openai(), f"Write to {EMAIL} about card 4111 1111 1111 1111.", tag)
    assert answer.choices[0].message.content
    sent = upstream_bodies(demo)
    assert EMAIL not in sent and "4111" not in sent
    assert "Write to [EMAIL] about card [CARD_NUMBER]." in sent
    assert sorted(record_tagged(tag).guardrail_flags) == [
        "request:redact:card_number",
        "request:redact:email",
    ]


def test_redaction_reaches_every_text_of_a_translated_anthropic_request(claude):
    services.guardrail_policy_create(
        name="secrets", owner=claude.team, detectors={"aws_access_key": "redact"}
    )
    claude.sync()
    # The Anthropic SDK to the OpenAI provider: the request is translated after redaction.
    claude.anthropic().messages.create(
        model="gpt-4o-mini",
        max_tokens=16,
        system=f"Deploy with {AWS_KEY}.",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": f"is {AWS_KEY} valid?"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "check", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": f"found {AWS_KEY}"}
                ],
            },
        ],
    )
    sent = upstream_bodies(claude)
    assert AWS_KEY not in sent
    assert sent.count("[SECRET:aws_access_key]") == 3


def test_a_flagged_request_is_forwarded_as_it_came_and_marked_in_the_log(demo, celery_worker):
    services.guardrail_policy_create(name="watch", detectors={"email": "flag"})
    demo.sync()
    tag = new_tag()
    ask(demo.openai(), f"Forward this to {EMAIL}", tag)
    assert EMAIL in upstream_bodies(demo)
    record = record_tagged(tag)
    assert record.status == 200
    assert record.guardrail_flags == ["request:flag:email"]
    metrics = demo.gateway.client.get("/metrics").text
    assert (
        'gateway_guardrail_findings_total{action="flag",direction="request",rule="email"}'
        in metrics
    )


def test_a_request_with_nothing_to_find_leaves_no_flags(demo, celery_worker):
    services.guardrail_policy_create(
        name="all", detectors={"secrets": "block", "personal_data": "redact"}
    )
    demo.sync()
    tag = new_tag()
    ask(demo.openai(), "Summarise the quarterly report in three bullet points.", tag)
    assert "Summarise the quarterly report in three bullet points." in upstream_bodies(demo)
    assert record_tagged(tag).guardrail_flags == []


def test_a_custom_deny_pattern_blocks_by_its_name(demo):
    services.guardrail_policy_create(
        name="codenames",
        owner=VirtualKey.objects.get(name="platform-app"),
        deny_patterns=[{"name": "codename", "pattern": r"(?i)project\s+orca", "action": "block"}],
    )
    demo.sync()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(demo.openai(), "What is the launch date of Project Orca?")
    assert "custom:codename" in caught.value.body["message"]
    assert ask(demo.openai(), "What is the launch date of the new project?").choices


def test_too_many_messages_or_input_tokens_are_refused(demo):
    services.guardrail_policy_create(name="limits", max_messages=2, max_input_tokens=50)
    demo.sync()
    client = demo.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}] * 3,
        )
    assert "max_messages" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, "word " * 200)
    assert "max_input_tokens" in caught.value.body["message"]
    assert ask(client, "a short question").choices
    assert demo.mock.request_count() == 1


def test_responses_and_embeddings_inputs_are_checked_too(demo):
    services.guardrail_policy_create(name="no keys", detectors={"aws_access_key": "redact"})
    demo.sync()
    demo.openai().embeddings.create(model="gpt-4o-mini", input=[f"key {AWS_KEY}"])
    sent = upstream_bodies(demo)
    assert AWS_KEY not in sent and "key [SECRET:aws_access_key]" in sent


def test_a_token_count_sent_to_the_provider_is_redacted_too_but_not_limited(claude):
    services.guardrail_policy_create(
        name="no keys", detectors={"aws_access_key": "redact"}, max_messages=1
    )
    claude.sync()
    counted = claude.anthropic().messages.count_tokens(
        model="claude-sonnet",
        messages=[
            {"role": "user", "content": f"is {AWS_KEY} valid?"},
            {"role": "assistant", "content": "let me see"},
        ],
    )
    assert counted.input_tokens > 0
    sent = upstream_bodies(claude)
    assert AWS_KEY not in sent and "[SECRET:aws_access_key]" in sent


@pytest.mark.django_db
def test_the_request_log_shows_which_guardrail_rules_fired(console, who):
    from tests.console_helpers import record

    record(
        console.key,
        request_id="req-guarded",
        guardrail_flags=["request:redact:email", "response:flag:phone"],
    )
    page = who.admin.get(reverse("governance:request_detail", args=["req-guarded"]))
    assert "request:redact:email, response:flag:phone" in page.content.decode()
