"""The chat flow every front door shares: key, policy, guardrails, admission,
routing, upstream attempts, relay, settlement.

A front door (OpenAI's ``/v1/chat/completions``, Anthropic's ``/v1/messages``)
subclasses :class:`ChatConsumer` and says how its requests are validated,
how they read in the canonical (OpenAI) shape, and how answers are written
back: untouched when the provider speaks the client's wire format, through
the canonical shapes otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson

from gateway_project.fast_settings import settings
from governance.enforcement import ScopePolicy
from governance.guardrails import Guardrails
from proxy import admission, cache, guarding, routing, timeouts, tokens, tracing
from proxy.auth import authenticate
from proxy.consumer import InferenceConsumer
from proxy.content import ContentCapture
from proxy.errors import GatewayError, bad_request
from proxy.metrics import metrics
from proxy.providers.base import ProviderAdapter, Target, UpstreamRequest
from proxy.snapshot import KeyEntry, ProviderKeyEntry, RouteEntry, Snapshot, store
from proxy.streaming import Exchange, forward
from proxy.translation import SHAPE_ERRORS, Answer
from proxy.usage import Usage

logger = logging.getLogger(__name__)


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


def model_not_found(model: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


@dataclass(frozen=True, slots=True)
class Addressed:
    """A request whose caller may use the model it asked for."""

    payload: dict[str, Any]
    stream: bool
    snapshot: Snapshot
    route: RouteEntry
    levels: list[ScopePolicy]
    guardrails: Guardrails | None = None
    # The provider key the caller chose (debugging: the route only, no fallback).
    pinned: ProviderKeyEntry | None = None
    key: KeyEntry | None = None


class ChatConsumer(InferenceConsumer):
    """A chat front door; subclasses speak one client wire format."""

    # The wire format of this front door's clients ("openai", "anthropic").
    wire = ""
    # Where the text is in this front door's answers, for response guardrails
    # (None: its answers are not checked).
    response_shape: guarding.Shape | None = None

    def validate(self, payload: dict[str, Any]) -> tuple[str, bool]:
        """The requested model and stream flag, or a 400."""
        raise NotImplementedError

    def native_payload(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        """The client's request as it goes to a provider of the same wire."""
        return payload

    def canonical(self, payload: dict[str, Any], stream: bool) -> dict[str, Any]:
        """The client's request in the canonical shape."""
        raise NotImplementedError

    def passthrough(self, payload: dict[str, Any]) -> Answer:
        raise NotImplementedError

    def translation(self, adapter: ProviderAdapter, model: str, payload: dict[str, Any]) -> Answer:
        raise NotImplementedError

    # Whether the request produces output tokens (for its budget reservation).
    produces_output = True

    # How this front door's answers are cached (None: they are not).
    cache_wire: cache.WireFormat | None = None

    # Client headers relayed to a provider of the client's wire format: opt-in
    # feature flags such as Anthropic's ``anthropic-beta``.
    forwarded_headers: tuple[bytes, ...] = ()

    def with_client_headers(self, request: UpstreamRequest) -> UpstreamRequest:
        """``request`` with the client's :attr:`forwarded_headers` added."""
        extra = {
            name.decode(): value.decode("latin-1")
            for name in self.forwarded_headers
            if (value := self.headers.get(name)) is not None
        }
        return replace(request, headers={**request.headers, **extra}) if extra else request

    def count_input(self, payload: dict[str, Any]) -> int:
        """The request's input tokens by the gateway's tokenizer (an estimate)."""
        return tokens.count_messages(
            payload.get("messages") or payload.get("prompt") or payload.get("input"),
            system=payload.get("system"),
            tools=payload.get("tools"),
        )

    def prepare(
        self, adapter: ProviderAdapter, where: Target, payload: dict[str, Any], stream: bool
    ) -> tuple[UpstreamRequest, Answer]:
        """The upstream request of one attempt and what to do with its answer:
        untouched for a provider of the client's wire, translated otherwise."""
        if adapter.wire == self.wire:
            request = adapter.native_request(
                where, self.native_payload(payload, stream), stream=stream
            )
            return self.with_client_headers(request), self.passthrough(payload)
        try:
            if self._canonical is None:
                self._canonical = self.canonical(payload, stream)
            request = adapter.chat_request(where, self._canonical, stream=stream)
        except SHAPE_ERRORS as exc:
            # The validators and translators refuse what they know to be wrong
            # with its field named; this is for a type none of them foresaw.
            logger.warning(
                "could not translate a request for %s: %s: %s",
                adapter.kind,
                type(exc).__name__,
                exc,
            )
            raise bad_request(
                f"the request could not be translated for {adapter.kind} providers: "
                "a field has a type it cannot have"
            ) from None
        return request, self.translation(adapter, where.model, payload)

    async def address(self, body: bytes) -> Addressed:
        """The caller (by key), its request, the route serving the requested
        model, and the policies the request must satisfy; raises the refusal."""
        await store.ensure_loaded()
        key = await authenticate(self.headers, self.scope)
        # Known from here: the refusals that follow are the key's own.
        self.caller_known = True
        self.entry.update(key_id=key.id or None, team_id=key.team_id, customer_id=key.customer_id)
        payload = parse_json_object(body)
        model, stream = self.validate(payload)
        snapshot = store.current
        route = snapshot.resolve_model(model)
        if route is None:
            raise model_not_found(model)
        self.entry.update(requested_model=model[:200], stream=stream)
        self.team = key.team_name
        levels = snapshot.policy_levels(key)
        admission.check_access(levels, model, route)
        pin = self.headers.get(b"x-gateway-provider-key")
        pinned = None
        if pin is not None:
            if not key.may_pin_provider_keys:
                raise GatewayError(
                    403,
                    "This key may not choose a provider key (x-gateway-provider-key); "
                    "an admin can allow it for debugging.",
                    code="key_pinning_not_allowed",
                )
            pinned = routing.pinned_key(route.provider, pin)
        return Addressed(
            payload, stream, snapshot, route, levels, snapshot.guardrails(key), pinned, key
        )

    async def handle(self, body: bytes) -> None:
        addressed = await self.address(body)
        payload, stream, route = addressed.payload, addressed.stream, addressed.route
        snapshot, levels = addressed.snapshot, addressed.levels
        fallbacks = routing.requested_fallbacks(payload)
        if "fallbacks" in payload:
            payload = {name: value for name, value in payload.items() if name != "fallbacks"}
        guardrails = addressed.guardrails
        if guardrails is not None and guardrails.checks_request:
            # Before anything is taken or sent: a refused request costs nothing.
            payload = await guarding.check_request(self, guardrails, payload)
        guard = guarding.response_guard(self, guardrails)
        capture = None
        if addressed.key is not None and addressed.key.store_content:
            capture = ContentCapture(self.response_shape, settings.GATEWAY_CONTENT_MAX_BYTES)
            capture.take_request(payload)
        if addressed.pinned is None:
            targets = routing.deployments(snapshot, route, fallbacks, levels)
        else:
            targets = [route]  # debugging one key: no fallback
        lookup = None
        wire = self.cache_wire
        if wire is not None and addressed.pinned is None and addressed.key is not None:
            lookup = cache.lookup_for(
                self, levels, addressed.key, route, payload, self.forwarded_headers
            )
        ticket = await admission.admit(
            levels,
            [snapshot.price(target, self.started) for target in targets],
            payload,
            len(body),
            produces_output=self.produces_output,
            lookup=lookup,
        )
        keep = None
        if lookup is not None and wire is not None:
            if lookup.found is not None and not await self.answer_from_cache(
                addressed, wire, lookup.found, ticket, guard
            ):
                lookup.found = None  # not replayable: a miss after all
            metrics.count(
                "gateway_cache_lookups", (self.endpoint, self.team, lookup.result.decode())
            )
            if lookup.found is not None:
                return
            if lookup.store:
                keep = cache.Keeper(wire)
        deadline = timeouts.requested(self.headers)
        exchange = Exchange()
        served = route
        self._canonical: dict[str, Any] | None = None

        async def attempt(
            target: RouteEntry, provider_key: ProviderKeyEntry, index: int, retries: int
        ) -> None:
            nonlocal served
            served = target
            provider = target.provider
            self.entry.update(
                provider=provider.name,
                served_model=target.provider_model,
                fallback_index=index,
                retries=retries,
            )
            where = target.target(provider_key)
            request, answer = self.prepare(provider.adapter, where, payload, stream)
            served_by = [
                (b"x-gateway-provider", provider.name.encode()),
                (b"x-gateway-model", target.provider_model.encode()),
                (b"x-gateway-fallback-index", str(index).encode()),
                (b"x-gateway-retries", str(retries).encode()),
            ]
            if ticket is not None:
                served_by += ticket.headers
            if lookup is not None:
                served_by.append((cache.HEADER, lookup.result))
            span = None
            if self.span is not None:
                span = tracing.start_attempt(
                    self.span,
                    tracing.OPERATIONS.get(self.endpoint, self.endpoint),
                    provider.adapter.kind,
                    target.provider_model,
                    request.headers,
                    request.url,
                )
            try:
                await forward(
                    self,
                    request,
                    stream=stream,
                    served_by=served_by,
                    exchange=exchange,
                    answer=answer,
                    adapter=provider.adapter,
                    timeouts=provider.timeouts.capped(deadline),
                    guard=guard,
                    keep=keep,
                    capture=capture,
                )
            except GatewayError as error:
                if span is not None:
                    tracing.end_attempt(span, error=error)
                    span = None
                raise
            finally:
                if span is not None:
                    tracing.end_attempt(span, usage=exchange.usage)

        try:
            await routing.call_with_fallbacks(
                targets, attempt, lambda: self.response_started, addressed.pinned
            )
        finally:
            self.upstream_seconds = exchange.upstream_seconds
            input_estimate = None
            if exchange.usage is None and exchange.delta_events:
                # No usage reported (client left, provider sent none): count the
                # prompt with the tokenizer, off the event loop.
                input_estimate = await asyncio.to_thread(self.count_input, payload)
            usage, cost = admission.final_usage(
                exchange.usage,
                exchange.delta_events,
                len(body),
                snapshot.price(served, self.started),
                ticket,
                input_estimate=input_estimate,
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
            if capture is not None:
                # After the answer went out; redaction is the only cost, and
                # only for teams that keep content.
                self.entry["content"] = capture.record()
            stored = None
            if (
                lookup is not None
                and keep is not None
                and self.response_complete
                and self.status == 200
            ):
                entry = keep.entry(exchange.usage)
                if entry is not None:
                    stored = (lookup, entry)
            if ticket is not None:
                await admission.settle(ticket, usage, cost, stored)
            elif stored is not None:
                await cache.put(*stored)

    async def answer_from_cache(
        self,
        addressed: Addressed,
        wire: cache.WireFormat,
        body: bytes,
        ticket: admission.Ticket | None,
        guard: guarding.ResponseGuard | None = None,
    ) -> bool:
        """Serve a hit: no provider, no tokens, no cost (the reservation is
        returned); False when the entry cannot be replayed (a miss after all).
        ``guard``: the response guardrails in force now, which the stored
        answer passes again (it may be refused, or redacted further)."""
        route = addressed.route
        try:
            served = await cache.serve(
                self,
                wire,
                body,
                stream=addressed.stream,
                payload=addressed.payload,
                headers=ticket.headers if ticket is not None else [],
                guard=guard,
            )
        except BaseException:
            if ticket is not None:
                await admission.settle(ticket, Usage(), 0)
            raise
        if served:
            self.entry.update(
                cache_hit=True, provider=route.provider.name, served_model=route.provider_model
            )
            if ticket is not None:
                await admission.settle(ticket, Usage(), 0)
        return served
