"""Shared pieces of the message-content tests: a question and an answer holding
personal data and a secret, what they look like redacted, and one tagged request."""

from __future__ import annotations

import openai

from tests.ledger_helpers import new_tag, record_tagged

EMAIL = "jane.doe@example.com"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
QUESTION = f"Write to {EMAIL} about the account."
REDACTED_QUESTION = "Write to [EMAIL] about the account."
# The key cut across streamed deltas: redaction sees the assembled text.
SPLIT = ["Your key is AKIAIOSF", "ODNN7EXAMPLE and", " that is all."]
ANSWER = "".join(SPLIT)
REDACTED_ANSWER = "Your key is [SECRET:aws_access_key] and that is all."
# What the request log keeps of :func:`ask`'s request, answered with ``ANSWER``.
REDACTED_CONTENT = {
    "request": {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": REDACTED_QUESTION},
        ]
    },
    "response": REDACTED_ANSWER,
    "truncated": False,
}


def ask(client: openai.OpenAI, *, stream: bool) -> tuple[str, str]:
    """Send the question (tagged); the answer's text as the client got it, and the tag."""
    tag = new_tag()
    request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": QUESTION},
        ],
        "extra_headers": {"x-request-id": tag},
    }
    if stream:
        chunks = client.chat.completions.create(**request, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(**request).choices[0].message.content
    return text, tag


def assert_usage_only(client: openai.OpenAI) -> None:
    """Asked with and without streaming: the client gets the answer, the log its usage only."""
    for stream in (False, True):
        text, tag = ask(client, stream=stream)
        assert text == ANSWER
        record = record_tagged(tag)
        assert record.content is None
        assert record.output_tokens > 0  # the usage is there, the words are not
