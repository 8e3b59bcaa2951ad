"""The official OpenAI and Anthropic SDKs reach a Bedrock provider through the
gateway: completions, streams, tool-call round trips and images, each request
signed with Signature Version 4 and checked by the mock Bedrock runtime."""

from __future__ import annotations

import openai
import pytest

from keys import services
from proxy.mock_provider import bedrock as mock_bedrock
from tests.conftest import PIXEL

MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
CONVERSE = "/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA},
}
ANTHROPIC_TOOL = {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}


def add_bedrock(
    demo, *, name: str, route: str, secret: str, model: str = MODEL, region: str = "us-east-1"
) -> None:
    """A Bedrock provider on the mock runtime, with one key, serving ``route``."""
    provider = services.provider_create(
        name=name,
        kind="bedrock",
        base_url=f"{demo.mock.url}/bedrock",
        allow_private_network=True,
        options={"region": region},
    )
    services.provider_key_create(provider=provider, name="primary", secret=secret)
    services.model_route_create(name=route, provider=provider, provider_model=model)
    demo.sync()


@pytest.fixture
def bedrock(demo):
    """A Bedrock provider signing with an access key pair, as route ``claude-br``."""
    secret = f"{mock_bedrock.ACCESS_KEY_ID}:{mock_bedrock.SECRET_ACCESS_KEY}"
    add_bedrock(demo, name="bedrock", route="claude-br", secret=secret)
    return demo


def test_the_openai_sdk_gets_a_completion_from_bedrock(bedrock):
    completion = bedrock.openai().chat.completions.create(
        model="claude-br",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello"},
        ],
        max_tokens=5,
        temperature=0.5,
    )
    assert completion.choices[0].message.content == "word0 word1 word2 word3 word4"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.completion_tokens == 5
    [received] = bedrock.mock.requests()
    assert received["path"] == CONVERSE
    assert received["body"] == {
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "system": [{"text": "Be brief."}],
        "inferenceConfig": {"maxTokens": 5, "temperature": 0.5},
    }
    assert "/us-east-1/bedrock/aws4_request" in received["headers"]["authorization"]


def test_the_openai_sdk_streams_from_bedrock_with_usage(bedrock):
    stream = bedrock.openai().chat.completions.create(
        model="claude-br",
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "word0 word1 word2"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 3
    assert bedrock.mock.requests()[-1]["path"] == CONVERSE + "-stream"


def test_the_openai_sdk_round_trips_a_tool_call_with_bedrock(bedrock):
    sdk = bedrock.openai()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.chat.completions.create(model="claude-br", messages=messages, tools=[OPENAI_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    assert call.id.startswith("tooluse_")
    assert call.function.name == "get_weather"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny"},
    ]
    second = sdk.chat.completions.create(model="claude-br", messages=messages, tools=[OPENAI_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("word0")
    sent = bedrock.mock.requests()[-1]["body"]["messages"]
    assert sent[1]["content"][-1]["toolUse"]["toolUseId"] == call.id
    assert sent[2]["content"] == [
        {"toolResult": {"toolUseId": call.id, "content": [{"text": "Sunny"}]}}
    ]


def test_the_openai_sdk_streams_a_tool_call_from_bedrock(bedrock):
    stream = bedrock.openai().chat.completions.create(
        model="claude-br",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[OPENAI_TOOL],
        tool_choice="required",
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    calls = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id.startswith("tooluse_") and calls[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in calls) == '{"city":"mock"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert bedrock.mock.requests()[-1]["body"]["toolConfig"]["toolChoice"] == {"any": {}}


def test_the_openai_sdk_sends_an_image_to_bedrock(bedrock):
    bedrock.openai().chat.completions.create(
        model="claude-br",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
                ],
            }
        ],
    )
    content = bedrock.mock.requests()[-1]["body"]["messages"][0]["content"]
    assert content == [
        {"text": "What is this?"},
        {"image": {"format": "png", "source": {"bytes": PIXEL}}},
    ]


def test_an_image_by_url_is_refused_before_reaching_bedrock(bedrock):
    with pytest.raises(openai.BadRequestError) as caught:
        bedrock.openai().chat.completions.create(
            model="claude-br",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ],
                }
            ],
        )
    assert "images by URL" in caught.value.message
    assert bedrock.mock.requests() == []


def test_the_anthropic_sdk_gets_a_message_from_bedrock(bedrock):
    message = bedrock.anthropic().messages.create(
        model="claude-br",
        max_tokens=4,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert message.content[0].text == "word0 word1 word2 word3"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    assert bedrock.mock.requests()[-1]["body"]["system"] == [{"text": "Be brief."}]


def test_the_anthropic_sdk_streams_from_bedrock(bedrock):
    with bedrock.anthropic().messages.stream(
        model="claude-br", max_tokens=3, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "word0 word1 word2"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 3


def test_the_anthropic_sdk_round_trips_a_tool_call_with_bedrock(bedrock):
    sdk = bedrock.anthropic()
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = sdk.messages.create(
        model="claude-br", max_tokens=64, tools=[ANTHROPIC_TOOL], messages=messages
    )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.id.startswith("tooluse_") and call.input == {"city": "mock"}
    messages += [
        {"role": "assistant", "content": first.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
        },
    ]
    second = sdk.messages.create(
        model="claude-br", max_tokens=64, tools=[ANTHROPIC_TOOL], messages=messages
    )
    assert second.stop_reason == "end_turn" and second.content[0].text.startswith("word0")
    sent = bedrock.mock.requests()[-1]["body"]["messages"]
    assert sent[2]["content"][0]["toolResult"]["toolUseId"] == call.id


def test_the_anthropic_sdk_sends_an_image_to_bedrock(bedrock):
    bedrock.anthropic().messages.create(
        model="claude-br",
        max_tokens=8,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    content = bedrock.mock.requests()[-1]["body"]["messages"][0]["content"]
    assert content[0] == {"image": {"format": "png", "source": {"bytes": PIXEL}}}


def test_bedrock_throttling_reaches_the_client_as_a_rate_limit(bedrock):
    bedrock.mock.add_rule(match={"path": "/converse"}, status=429, retry_after=1)
    with pytest.raises(openai.RateLimitError) as caught:
        bedrock.openai().chat.completions.create(
            model="claude-br", messages=[{"role": "user", "content": "hi"}]
        )
    assert "Too many requests" in caught.value.message


def test_a_refused_signature_is_the_gateway_s_fault_not_the_client_s(bedrock):
    wrong = f"{mock_bedrock.ACCESS_KEY_ID}:not-the-secret"
    add_bedrock(bedrock, name="bedrock-bad", route="claude-br-bad", secret=wrong)
    with pytest.raises(openai.APIStatusError) as caught:
        bedrock.openai().chat.completions.create(
            model="claude-br-bad", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert "signature" in caught.value.message


def test_the_openai_sdk_gets_embeddings_from_titan_on_bedrock(bedrock):
    add_bedrock(
        bedrock,
        name="bedrock-embed",
        route="titan-embed",
        secret=mock_bedrock.API_KEY,
        model="amazon.titan-embed-text-v2:0",
        region="us-west-2",
    )
    result = bedrock.openai().embeddings.create(
        model="titan-embed", input="three short words", dimensions=512
    )
    assert len(result.data[0].embedding) == 512
    assert result.usage.prompt_tokens == 3
    [received] = bedrock.mock.requests()
    assert received["path"] == "/bedrock/model/amazon.titan-embed-text-v2:0/invoke"
    assert received["body"] == {
        "inputText": "three short words",
        "normalize": True,
        "dimensions": 512,
    }
