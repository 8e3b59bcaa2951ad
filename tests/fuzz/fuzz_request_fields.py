"""The request readers: each front door's validation of a JSON body, then its
translation for every provider kind. Any JSON object is refused with a
``GatewayError`` (a 400 in the client's envelope) or translated; nothing else
raises."""

from __future__ import annotations

import os
import sys

import atheris

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

with atheris.instrument_imports(include=["proxy"]):
    import django

    django.setup()
    import orjson

    from proxy.anthropic_api import to_canonical, validate_messages
    from proxy.errors import GatewayError
    from proxy.openai_api import validate_chat
    from proxy.openai_endpoints import completion_as_chat, validate_completion
    from proxy.providers import REGISTRY
    from proxy.providers.base import Target

TARGETS = {
    kind: Target(
        base_url="https://provider.example/v1",
        api_key="AKIAFUZZ0000000000:secret" if kind == "bedrock" else "key",
        model="model",
        options={"region": "us-east-1"} if kind == "bedrock" else {},
    )
    for kind in REGISTRY
}


def translated(canonical: dict, stream: bool) -> None:
    for kind, adapter in REGISTRY.items():
        try:
            adapter.chat_request(TARGETS[kind], canonical, stream=stream)
        except GatewayError:
            pass


def test_one_input(data: bytes) -> None:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    if not isinstance(payload, dict):
        return
    readers = [
        (validate_chat, lambda body, stream: body),
        (validate_messages, lambda body, stream: to_canonical(body, stream=stream)),
        (validate_completion, completion_as_chat),
    ]
    for validate, canonical_of in readers:
        try:
            _, stream = validate(payload)
            translated(canonical_of(payload, stream), stream)
        except GatewayError:
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
