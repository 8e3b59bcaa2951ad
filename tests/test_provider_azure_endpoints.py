"""An Azure OpenAI resource serves embeddings, legacy completions and the
Responses API through the gateway, on the classic (deployment in the path,
``api-version`` in the query) and the v1 surface."""

from __future__ import annotations

import httpx
import pytest

from keys import services
from tests.conftest import Demo

SURFACES = {
    "classic": ({}, "/azure/openai/deployments/{deployment}/{endpoint}"),
    "v1": ({"api_version": "v1"}, "/azure/openai/v1/{endpoint}"),
}


@pytest.fixture(params=sorted(SURFACES))
def azure(request, demo: Demo):
    options, path = SURFACES[request.param]
    provider = services.provider_create(
        name="azure",
        kind="azure",
        base_url=f"{demo.mock.url}/azure",
        allow_private_network=True,
        options=options,
    )
    services.provider_key_create(provider=provider, name="primary", secret="azure-key-0001")
    services.model_route_create(name="azure-embed", provider=provider, provider_model="mock-embed")
    services.model_route_create(name="azure-gpt", provider=provider, provider_model="mock-gpt")
    demo.sync()
    demo.path = path
    return demo


def sent(demo, endpoint: str, deployment: str) -> dict:
    [received] = demo.mock.requests()
    expected = demo.path.format(deployment=deployment, endpoint=endpoint)
    if endpoint == "responses":
        expected = "/azure/openai/v1/responses"
    assert received["path"] == expected
    assert received["headers"]["api-key"] == "azure-key-0001"
    return received


def test_the_openai_sdk_embeds_through_an_azure_deployment(azure):
    result = azure.openai().embeddings.create(model="azure-embed", input=["one", "two words"])
    assert [len(item.embedding) for item in result.data] == [8, 8]
    assert result.usage.prompt_tokens == 3
    received = sent(azure, "embeddings", "mock-embed")
    assert received["body"]["model"] == "mock-embed"


def test_base64_embeddings_pass_through_untouched(azure):
    body = {"model": "azure-embed", "input": "hello", "encoding_format": "base64"}
    answer = httpx.post(
        f"{azure.gateway.url}/v1/embeddings",
        headers={"authorization": f"Bearer {azure.key}"},
        json=body,
    )
    assert answer.status_code == 200
    assert isinstance(answer.json()["data"][0]["embedding"], str)


def test_the_openai_sdk_gets_a_legacy_completion_from_azure(azure):
    completion = azure.openai().completions.create(model="azure-gpt", prompt="Say", max_tokens=3)
    assert completion.choices[0].text == "word0 word1 word2"
    assert completion.usage.completion_tokens == 3
    sent(azure, "completions", "mock-gpt")


def test_the_openai_sdk_streams_a_legacy_completion_from_azure(azure):
    chunks = list(
        azure.openai().completions.create(
            model="azure-gpt", prompt="Say", max_tokens=2, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "word0 word1"


def test_the_openai_sdk_reaches_the_responses_api_of_azure(azure):
    response = azure.openai().responses.create(model="azure-gpt", input="Say hello")
    assert response.output_text.startswith("word0")
    assert response.usage.output_tokens > 0
    received = sent(azure, "responses", "mock-gpt")
    assert received["body"]["model"] == "mock-gpt"


def test_the_mock_resource_refuses_what_azure_refuses(demo):
    base = f"{demo.mock.url}/azure/openai"
    headers = {"api-key": "k"}
    body = {"input": "x"}
    no_version = httpx.post(f"{base}/deployments/mock-embed/embeddings", json=body, headers=headers)
    assert no_version.status_code == 404
    unknown = httpx.post(
        f"{base}/deployments/nope/embeddings?api-version=2024-10-21", json=body, headers=headers
    )
    assert unknown.json()["error"]["code"] == "DeploymentNotFound"
    anonymous = httpx.post(f"{base}/v1/embeddings", json={"model": "mock-embed", **body})
    assert anonymous.status_code == 401
