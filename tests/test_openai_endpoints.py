"""Embeddings, legacy completions and the Responses API through the gateway,
with the official openai SDK."""

from __future__ import annotations

import openai
import pytest

from tests.ledger_helpers import new_tag, record_tagged


@pytest.fixture
def embed(demo):
    from keys import services

    services.model_route_create(
        name="text-embedding-3-small", provider=demo.provider, provider_model="mock-embed"
    )
    demo.sync()
    return demo


def test_it_returns_embeddings(embed, celery_worker):
    tag = new_tag()
    result = embed.openai().embeddings.create(
        model="text-embedding-3-small",
        input=["one two", "three"],
        extra_headers={"x-request-id": tag},
    )
    assert [item.index for item in result.data] == [0, 1]
    assert all(len(item.embedding) == 8 for item in result.data)
    assert result.usage.prompt_tokens > 0
    [received] = embed.mock.requests()
    assert received["path"] == "/v1/embeddings"
    assert received["body"]["model"] == "mock-embed"
    record = record_tagged(tag)
    assert record.input_tokens == result.usage.prompt_tokens
    assert record.output_tokens == 0


def test_it_returns_float_embeddings_as_asked(embed):
    result = embed.openai().embeddings.create(
        model="text-embedding-3-small", input="one", encoding_format="float"
    )
    assert isinstance(result.data[0].embedding[0], float)


def test_it_refuses_embeddings_without_input(embed):
    with pytest.raises(openai.BadRequestError) as caught:
        embed.openai().embeddings.create(model="text-embedding-3-small", input=[])
    assert caught.value.body["param"] == "input"
    assert embed.mock.requests() == []


def test_it_says_when_a_provider_has_no_embeddings(claude):
    with pytest.raises(openai.BadRequestError) as caught:
        claude.openai().embeddings.create(model="claude-sonnet", input="hello")
    assert caught.value.body["code"] == "unsupported_parameter"


def test_it_relays_a_legacy_completion(demo):
    result = demo.openai().completions.create(model="gpt-4o-mini", prompt="Say hi", max_tokens=5)
    assert result.object == "text_completion"
    assert result.choices[0].text == "word0 word1 word2 word3 word4"
    assert result.choices[0].finish_reason == "length"
    assert demo.mock.requests()[0]["path"] == "/v1/completions"


def test_it_streams_a_legacy_completion(demo):
    chunks = list(
        demo.openai().completions.create(
            model="gpt-4o-mini",
            prompt="Say hi",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "word0 word1 word2"
    assert chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
def test_a_legacy_completion_reaches_anthropic_translated(claude, stream):
    sdk = claude.openai()
    if stream:
        chunks = list(
            sdk.completions.create(
                model="claude-sonnet",
                prompt="Say hi",
                max_tokens=4,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        usage = chunks[-1].usage
    else:
        result = sdk.completions.create(model="claude-sonnet", prompt="Say hi", max_tokens=4)
        text, finish, usage = result.choices[0].text, result.choices[0].finish_reason, result.usage
    assert text == "word0 word1 word2 word3"
    assert finish == "length"
    assert usage.completion_tokens == 4
    [received] = claude.mock.requests()
    assert received["body"]["messages"] == [{"role": "user", "content": "Say hi"}]
    assert received["body"]["max_tokens"] == 4


def test_it_passes_the_responses_api_through(demo, celery_worker):
    tag = new_tag()
    response = demo.openai().responses.create(
        model="gpt-4o-mini",
        input="Say hello",
        max_output_tokens=6,
        extra_headers={"x-request-id": tag},
    )
    assert response.output_text == "word0 word1 word2 word3 word4 word5"
    assert response.usage.output_tokens == 6
    [received] = demo.mock.requests()
    assert received["path"] == "/v1/responses"
    assert received["body"]["model"] == "mock-gpt"
    record = record_tagged(tag)
    assert record.output_tokens == 6
    assert record.input_tokens == response.usage.input_tokens


def test_it_streams_the_responses_api(demo, celery_worker):
    tag = new_tag()
    events = list(
        demo.openai().responses.create(
            model="gpt-4o-mini",
            input="Say hello",
            max_output_tokens=3,
            stream=True,
            extra_headers={"x-request-id": tag},
        )
    )
    assert events[0].type == "response.created"
    assert events[-1].type == "response.incomplete"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "word0 word1 word2"
    record = record_tagged(tag)
    assert record.output_tokens == 3 and not record.usage_estimated


def test_it_says_when_a_provider_has_no_responses_api(claude):
    with pytest.raises(openai.BadRequestError) as caught:
        claude.openai().responses.create(model="claude-sonnet", input="hello")
    assert caught.value.body["code"] == "unsupported_parameter"
