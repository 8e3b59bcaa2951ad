"""OpenAI-compatible front door: ``/v1/chat/completions`` and ``/v1/models``."""

from __future__ import annotations

from typing import Any

import orjson

from proxy import admission, routing
from proxy.auth import authenticate
from proxy.consumer import InferenceConsumer
from proxy.errors import GatewayError, bad_request
from proxy.providers.base import Target
from proxy.snapshot import RouteEntry, store
from proxy.streaming import Exchange, forward
from proxy.usage import OpenAIStreamScanner


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    if not body:
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"The request body is not valid JSON: {exc.msg}.", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return payload


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
    stream = payload.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise bad_request("'stream' must be a boolean.", param="stream")
    return model, bool(stream)


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


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


class ChatCompletionsConsumer(InferenceConsumer):
    """``POST /v1/chat/completions``, streaming and not."""

    async def handle(self, body: bytes) -> None:
        await store.ensure_loaded()
        key = await authenticate(self.headers, self.scope)
        payload = parse_json_object(body)
        model, stream = validate_chat(payload)
        snapshot = store.current
        route = snapshot.resolve_model(model)
        if route is None:
            raise model_not_found(model)
        self.entry.update(
            key_id=key.id or None,
            team_id=key.team_id,
            customer_id=key.customer_id,
            requested_model=model[:200],
            stream=stream,
        )
        levels = snapshot.policy_levels(key)
        admission.check_access(levels, model, route)
        fallbacks = routing.requested_fallbacks(payload)
        if "fallbacks" in payload:
            payload = {name: value for name, value in payload.items() if name != "fallbacks"}
        targets = routing.deployments(snapshot, route, fallbacks, levels)
        ticket = await admission.admit(
            levels, [snapshot.price(target) for target in targets], payload, len(body)
        )
        exchange = Exchange()
        if stream:
            exchange.scanner = OpenAIStreamScanner(drop_usage_event=not wants_usage(payload))
            payload = with_usage_requested(payload)
        served = route

        async def attempt(target: RouteEntry, provider_key: Any, index: int, retries: int) -> None:
            nonlocal served
            served = target
            provider = target.provider
            self.entry.update(
                provider=provider.name,
                served_model=target.provider_model,
                fallback_index=index,
                retries=retries,
            )
            request = provider.adapter.chat_request(
                Target(
                    provider.base_url, provider_key.secret, target.provider_model, provider.options
                ),
                payload,
                stream=stream,
            )
            served_by = [
                (b"x-gateway-provider", provider.name.encode()),
                (b"x-gateway-model", target.provider_model.encode()),
                (b"x-gateway-fallback-index", str(index).encode()),
                (b"x-gateway-retries", str(retries).encode()),
            ]
            if ticket is not None:
                served_by += ticket.headers
            await forward(self, request, stream=stream, served_by=served_by, exchange=exchange)

        try:
            await routing.call_with_fallbacks(targets, attempt, lambda: self.response_started)
        finally:
            usage, cost = admission.final_usage(
                exchange.usage, exchange.delta_events, len(body), snapshot.price(served), ticket
            )
            self.entry.update(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                usage_estimated=usage.estimated,
                cost_micros=cost,
                upstream_ms=exchange.upstream_ms,
                ttft_ms=exchange.ttft_ms,
            )
            if ticket is not None:
                await admission.settle(ticket, usage, cost)


class ModelsConsumer(InferenceConsumer):
    """``GET /v1/models``: the models the caller may address."""

    methods = ("GET",)
    recorded = False

    async def handle(self, body: bytes) -> None:
        await store.ensure_loaded()
        key = await authenticate(self.headers, self.scope)
        snapshot = store.current
        levels = snapshot.policy_levels(key)
        data = [
            {
                "id": name,
                "object": "model",
                "created": int(snapshot.built_at),
                "owned_by": route.provider.name,
            }
            for name, route in sorted(snapshot.routes.items())
            if admission.is_allowed(levels, name, route)
        ]
        await self.send_json(200, orjson.dumps({"object": "list", "data": data}))
