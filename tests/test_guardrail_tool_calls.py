"""Response guardrails on tool calls: the arguments a model passes to a tool are
checked like its text, whole and streamed, and stay valid JSON when redacted."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from governance import services
from tests.ledger_helpers import new_tag, record_tagged

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
ARGUMENTS = {"to": "ops@example.com", "body": f"the key is\n{AWS_KEY}"}
REDACTED = {"to": "[EMAIL]", "body": "the key is\n[SECRET:aws_access_key]"}
# The arguments' JSON text with both findings cut across fragments (and the
# mock's writes, 30 ms apart), the key right after an escaped newline.
FRAGMENTS = ['{"to": "ops@exa', 'mple.com", "body": "the key is\\nAKIAIO', 'SFODNN7EXAMPLE"}']
# Look-alikes: a card number failing its checksum, a key one character short,
# an address without its "@".
HARMLESS = {"order": "4111 1111 1111 1112", "ref": "AKIAIOSFODNN7EXAMP", "who": "ops at example"}

OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "send_mail",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                "required": ["to", "body"],
            },
        },
    }
]
ANTHROPIC_TOOLS = [
    {
        "name": "send_mail",
        "input_schema": OPENAI_TOOLS[0]["function"]["parameters"],
    }
]
QUESTION = [{"role": "user", "content": "mail the key to ops"}]


def response_policy(demo, action: str) -> None:
    services.guardrail_policy_create(
        name="answers",
        owner=demo.team,
        direction="response",
        detectors={"aws_access_key": action, "email": action, "card_number": action},
    )
    demo.sync()


def tool_answer(demo, arguments, **behaviour) -> None:
    demo.mock.add_rule(tool_arguments=arguments, **behaviour)


def openai_call(demo, model: str, tag: str | None = None):
    completion = demo.openai().chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=OPENAI_TOOLS,
        extra_headers={"x-request-id": tag} if tag else None,
    )
    return completion.choices[0].message.tool_calls[0]


def openai_streamed_arguments(demo, model: str, tag: str | None = None) -> list[str]:
    stream = demo.openai().chat.completions.create(
        model=model,
        messages=QUESTION,
        tools=OPENAI_TOOLS,
        stream=True,
        extra_headers={"x-request-id": tag} if tag else None,
    )
    fragments = []
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function and call.function.arguments:
                fragments.append(call.function.arguments)
    return fragments


def anthropic_call(demo, model: str):
    message = demo.anthropic().messages.create(
        model=model, max_tokens=64, messages=QUESTION, tools=ANTHROPIC_TOOLS
    )
    return next(block for block in message.content if block.type == "tool_use")


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_tool_call_arguments_are_redacted_inside_their_strings_for_openai_clients(
    claude, model, celery_worker
):
    # gpt-4o-mini: OpenAI's answer relayed; claude-sonnet: Anthropic's tool_use translated.
    response_policy(claude, "redact")
    tool_answer(claude, ARGUMENTS)
    tag = new_tag()
    call = openai_call(claude, model, tag)
    assert call.function.name == "send_mail"
    assert json.loads(call.function.arguments) == REDACTED
    assert record_tagged(tag).guardrail_flags == [
        "response:redact:email",
        "response:redact:aws_access_key",
    ]


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o-mini"])
def test_tool_use_input_is_redacted_for_anthropic_clients(claude, model):
    response_policy(claude, "redact")
    tool_answer(claude, ARGUMENTS)
    block = anthropic_call(claude, model)
    assert block.name == "send_mail"
    assert block.input == REDACTED


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-sonnet"])
def test_a_secret_split_across_streamed_argument_fragments_is_redacted_for_openai_clients(
    claude, model, celery_worker
):
    response_policy(claude, "redact")
    tool_answer(claude, FRAGMENTS, inter_token_ms=30)
    tag = new_tag()
    fragments = openai_streamed_arguments(claude, model, tag)
    assert json.loads("".join(fragments)) == REDACTED
    assert not any("AKIA" in fragment or "EXAMPLE" in fragment for fragment in fragments)
    assert not any("ops@" in fragment for fragment in fragments)
    assert sorted(record_tagged(tag).guardrail_flags) == [
        "response:redact:aws_access_key",
        "response:redact:email",
    ]


@pytest.mark.parametrize("model", ["claude-sonnet", "gpt-4o-mini"])
def test_a_secret_split_across_input_json_deltas_is_redacted_for_anthropic_clients(claude, model):
    response_policy(claude, "redact")
    tool_answer(claude, FRAGMENTS, inter_token_ms=30)
    partials = []
    with claude.anthropic().messages.stream(
        model=model, max_tokens=64, messages=QUESTION, tools=ANTHROPIC_TOOLS
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                partials.append(event.delta.partial_json)
        message = stream.get_final_message()
    assert message.content[0].input == REDACTED
    assert json.loads("".join(partials)) == REDACTED
    assert not any("AKIA" in partial for partial in partials)


def test_a_blocked_secret_in_tool_arguments_becomes_a_400_in_openais_envelope(demo):
    response_policy(demo, "block")
    tool_answer(demo, ARGUMENTS)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_call(demo, "gpt-4o-mini")
    assert caught.value.code == "guardrail_violation"
    assert "email" in caught.value.message
    assert AWS_KEY not in caught.value.response.text
    assert "ops@example.com" not in caught.value.response.text


def test_a_blocked_secret_in_streamed_tool_arguments_ends_an_anthropic_stream_with_an_error(
    claude, celery_worker
):
    response_policy(claude, "block")
    tool_answer(claude, ['{"body": "the key is\\nAKIAIO', 'SFODNN7EXAMPLE"}'], inter_token_ms=30)
    partials = []
    with pytest.raises(anthropic.APIError) as caught:
        with claude.anthropic().messages.stream(
            model="claude-sonnet", max_tokens=64, messages=QUESTION, tools=ANTHROPIC_TOOLS
        ) as stream:
            for event in stream:
                if event.type == "content_block_delta":
                    partials.append(event.delta.partial_json)
    assert "aws_access_key" in str(caught.value)
    assert "AKIA" not in "".join(partials)


def test_flagged_tool_arguments_are_relayed_unchanged_and_marked_in_the_log(demo, celery_worker):
    response_policy(demo, "flag")
    tool_answer(demo, FRAGMENTS)
    tag = new_tag()
    fragments = openai_streamed_arguments(demo, "gpt-4o-mini", tag)
    assert fragments == FRAGMENTS
    assert sorted(record_tagged(tag).guardrail_flags) == [
        "response:flag:aws_access_key",
        "response:flag:email",
    ]


def test_look_alikes_in_tool_arguments_pass_untouched(claude, celery_worker):
    response_policy(claude, "block")
    tool_answer(claude, HARMLESS)
    tag = new_tag()
    assert json.loads(openai_call(claude, "gpt-4o-mini", tag).function.arguments) == HARMLESS
    assert anthropic_call(claude, "claude-sonnet").input == HARMLESS
    assert record_tagged(tag).guardrail_flags in (None, [])


def test_a_redaction_that_would_break_the_arguments_json_blocks_instead(demo):
    # A custom pattern taking the string's closing quote with it cannot be
    # replaced by a placeholder without breaking the JSON.
    services.guardrail_policy_create(
        name="answers",
        owner=demo.team,
        direction="response",
        deny_patterns=[{"name": "ticket", "pattern": r'TICKET-\d+"', "action": "redact"}],
    )
    demo.sync()
    tool_answer(demo, {"ref": "TICKET-42"})
    with pytest.raises(openai.BadRequestError) as caught:
        openai_call(demo, "gpt-4o-mini")
    assert "custom:ticket" in caught.value.message


def test_a_card_number_given_as_a_json_number_becomes_a_quoted_placeholder(claude):
    response_policy(claude, "redact")
    tool_answer(claude, {"card": 4111111111111111, "count": 2})
    expected = {"card": "[CARD_NUMBER]", "count": 2}
    assert json.loads(openai_call(claude, "gpt-4o-mini").function.arguments) == expected
    assert anthropic_call(claude, "claude-sonnet").input == expected


def test_a_negative_card_number_is_replaced_whole_sign_included(claude):
    # Found by the atheris harness tests/fuzz/fuzz_guardrail_scanner.py: the
    # placeholder replaced the digits only, leaving `-"[CARD_NUMBER]"`.
    response_policy(claude, "redact")
    tool_answer(claude, {"card": -4111111111111111, "count": 2})
    expected = {"card": "[CARD_NUMBER]", "count": 2}
    assert json.loads(openai_call(claude, "gpt-4o-mini").function.arguments) == expected
    assert anthropic_call(claude, "claude-sonnet").input == expected
