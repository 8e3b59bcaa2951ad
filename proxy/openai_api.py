"""OpenAI-compatible front door: ``/v1/chat/completions`` and ``/v1/models``."""

from __future__ import annotations

import functools
from typing import Any

import orjson

from proxy import admission, cache, guarding
from proxy.auth import authenticate
from proxy.chat import ChatConsumer, parse_json_object
from proxy.consumer import InferenceConsumer
from proxy.errors import bad_request
from proxy.providers.base import ProviderAdapter
from proxy.snapshot import RouteEntry, store
from proxy.translation import Answer, OpenAIChunkEncoder, Passthrough, Translation
from proxy.usage import OpenAIStreamScanner, usage_from_openai

__all__ = ["ChatCompletionsConsumer", "ModelsConsumer", "openai_passthrough", "parse_json_object"]


def validate_chat(payload: dict[str, Any]) -> tuple[str, bool]:
    """The model name and stream flag of a chat request, or a 400."""
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string.", param="model")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' is required and must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request(
                f"messages[{index}] must be an object with a 'role'.", param=f"messages[{index}]"
            )
        where = f"messages[{index}]"
        _validate_functions(message.get("tool_calls"), f"{where}.tool_calls", calls=True)
        _validate_content(message.get("content"), f"{where}.content")
        if message["role"] == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise bad_request(
                f"{where}.tool_call_id is required for a tool message and must be a string.",
                param=f"{where}.tool_call_id",
            )
    _validate_functions(payload.get("tools"), "tools")
    validate_stop(payload)
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_request("'stream' must be a boolean.", param="stream")
    return model, bool(stream)


def validate_stop(payload: dict[str, Any]) -> None:
    """``stop``: absent, a string or an array of strings (adapters copy it)."""
    stop = payload.get("stop")
    if not (
        stop is None
        or isinstance(stop, str)
        or (isinstance(stop, list) and all(isinstance(item, str) for item in stop))
    ):
        raise bad_request("'stop' must be a string or an array of strings.", param="stop")


def _validate_content(content: Any, param: str) -> None:
    """A message's ``content``: a string, null, or an array of parts, each an
    object with a ``type`` (a text part's ``text`` a string), as OpenAI
    requires; adapters translating parts then meet no other shape."""
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise bad_request(f"'{param}' must be a string or an array of parts.", param=param)
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{where} must be an object with a 'type'.", param=where)
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise bad_request(f"{where}.text must be a string.", param=f"{where}.text")


def _validate_functions(items: Any, param: str, *, calls: bool = False) -> None:
    """``tools`` and an assistant's ``tool_calls``: arrays of objects whose
    ``function``, when they have one, is an object with a name (and a call's
    ``id``, when it has one, a string). Checked here
    once, so that no adapter translating them meets a string where it reads
    a field (OpenAI refuses the same with a 400)."""
    if items is None:
        return
    if not isinstance(items, list):
        raise bad_request(f"'{param}' must be an array.", param=param)
    for index, item in enumerate(items):
        where = f"{param}[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where} must be an object.", param=where)
        if calls and "id" in item and not isinstance(item["id"], str):
            raise bad_request(f"{where}.id must be a string.", param=f"{where}.id")
        function = item.get("function")
        if (function is not None or item.get("type") == "function") and not (
            isinstance(function, dict) and isinstance(function.get("name"), str)
        ):
            raise bad_request(
                f"{where}.function must be an object with a 'name'.", param=f"{where}.function"
            )


def wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def with_usage_requested(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload asking for the final usage chunk, which accounting needs."""
    if wants_usage(payload):
        return payload
    options = payload.get("stream_options")
    return {
        **payload,
        "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True},
    }


# OpenAI answers relayed untouched. Stateless (each stream gets its own
# scanner), so made once: one drops the usage chunk the client did not ask for.
_PASSTHROUGH = {
    drop: Passthrough(
        "text/event-stream",
        usage_from_openai,
        functools.partial(OpenAIStreamScanner, drop_usage_event=drop),
    )
    for drop in (False, True)
}


def openai_passthrough(payload: dict[str, Any]) -> Passthrough:
    """How an OpenAI-compatible provider's chat or legacy completion reaches an
    OpenAI client: untouched, the usage chunk kept only if the client asked."""
    return _PASSTHROUGH[not wants_usage(payload)]


class ChatCompletionsConsumer(ChatConsumer):
    """``POST /v1/chat/completions``, streaming and not."""

    endpoint = "chat_completions"

    wire = "openai"
    response_shape = guarding.OPENAI_CHAT
    cache_wire = cache.OPENAI_CHAT

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        return validate_chat(payload)

    def native_payload(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        return with_usage_requested(payload) if stream else payload

    def canonical(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        return payload

    def passthrough(self, payload: dict[str, Any]) -> Answer:
        return openai_passthrough(payload)

    def translation(self, adapter: ProviderAdapter, model: str, payload: dict[str, Any]) -> Answer:
        include = wants_usage(payload)
        return Translation(
            adapter, model, orjson.dumps, lambda: OpenAIChunkEncoder(include_usage=include)
        )


class ModelsConsumer(InferenceConsumer):
    """``GET /v1/models``: the models the caller may address."""

    methods = ("GET",)
    recorded = False

    async def allowed_routes(self) -> list[tuple[str, RouteEntry]]:
        """The public model names the caller's key may use, sorted."""
        await store.ensure_loaded()
        key = await authenticate(self.headers, self.scope)
        levels = store.current.policy_levels(key)
        return [
            (name, route)
            for name, route in sorted(store.current.routes.items())
            if admission.is_allowed(levels, name, route)
        ]

    async def handle(self, body: bytes) -> None:
        created = int(store.current.built_at)
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": route.provider.name}
            for name, route in await self.allowed_routes()
        ]
        await self.send_json(200, orjson.dumps({"object": "list", "data": data}))
