"""The response cache: repeated identical chat requests answered from a store.

Opt-in per customer, team or key (``cache_ttl_seconds`` in the snapshot's
policies; off by default). An entry is the complete answer in the client's
wire format, as the client received it (after response guardrails), keyed by
a SHA-256 of the normalised request, the front door, the route and the
caller's scope: the team when the cache is on for the team (or its
customer), else the one key that opted in alone. Teams never share entries.
A hit passes the caller's response guardrails again before it is sent
(:func:`serve`): the policies in force now, not those of the request that
stored it.

The store rides on the limits backend's round trips: in cluster mode the
lookup is a GET pipelined with admission's script, the store a SET pipelined
with settlement's (``governance.limits.RedisLimits``); in embedded mode both
are dictionary operations in this process (:class:`MemoryStore`, LRU and
TTL bounded). A hit is admitted like any request (it counts against request
rate limits), then settled at zero tokens and zero cost.

Streams are relayed as they come; a copy of what the client receives is kept
alongside (up to ``GATEWAY_CACHE_MAX_ENTRY_BYTES``) and turned into the
complete answer once the stream has ended well. Either kind of entry replays
as either kind of answer: a stream request gets a valid stream of its front
door's format (OpenAI chunks and ``[DONE]``, or Anthropic's events).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from gateway_project.redis_client import redis_key
from governance.enforcement import ScopePolicy, backend
from governance.limits import Admission, AdmissionPlan, RedisLimits
from governance.outage import OutageAwareLimits
from proxy.providers.canonical import usage_dict
from proxy.sse import SSEParser, encode
from proxy.translation import RelayWrapper
from proxy.usage import Usage

if TYPE_CHECKING:
    from proxy.consumer import InferenceConsumer
    from proxy.guarding import ResponseGuard
    from proxy.snapshot import KeyEntry, RouteEntry
    from proxy.translation import StreamRelay

# Backends whose store is Redis: lookups and stores ride on their round trips.
SHARED_BACKENDS = (RedisLimits, OutageAwareLimits)
logger = logging.getLogger(__name__)

HEADER = b"x-gateway-cache"
# Request fields that change how an answer is delivered, not what it says:
# a streamed and a whole answer share an entry.
DELIVERY_FIELDS = frozenset({"stream", "stream_options"})


# --- who caches, for how long, under which scope ----------------------------------


def rule(levels: list[ScopePolicy], key: KeyEntry) -> tuple[int, str] | None:
    """The TTL and scope of ``key``'s entries, or None when its cache is off.

    The most specific level that sets a TTL decides (0: off). Entries are the
    team's when the cache is on for the team (set there or on its customer),
    the customer's when it also shares them across its teams, else the key's
    own.
    """
    ttl = team_ttl = None
    across_teams = False
    for policy in levels:  # key, team, customer
        if policy.cache_shared and policy.kind == "customer":
            across_teams = True
        if policy.cache_ttl is None:
            continue
        if ttl is None:
            ttl = policy.cache_ttl
        if team_ttl is None and policy.kind != "key":
            team_ttl = policy.cache_ttl
    if not ttl:
        return None
    if not team_ttl:
        return ttl, f"key:{key.id}"
    if across_teams:
        return ttl, f"customer:{key.customer_id}"
    return ttl, f"team:{key.team_id}"


@dataclass(slots=True)
class Lookup:
    """One request's use of the cache: whether it reads, whether it stores."""

    digest: str
    ttl: int
    read: bool
    store: bool
    found: bytes | None = None

    @property
    def result(self) -> bytes:
        if not self.read:
            return b"bypass"
        return b"hit" if self.found is not None else b"miss"

    @property
    def redis_key(self) -> str:
        return redis_key("cache", self.digest)


def lookup_for(
    consumer: InferenceConsumer,
    levels: list[ScopePolicy],
    key: KeyEntry,
    route: RouteEntry,
    payload: dict[str, Any],
    forwarded: tuple[bytes, ...] = (),
) -> Lookup | None:
    """The request's lookup, or None when its caller does not cache.

    ``cache-control: no-cache`` skips the lookup (the fresh answer is still
    stored), ``no-store`` skips both; so do requests for several choices.
    """
    found = rule(levels, key)
    if found is None:
        return None
    ttl, scope = found
    directives = consumer.headers.get(b"cache-control", b"").lower()
    no_store = b"no-store" in directives
    choices = payload.get("n")
    several = isinstance(choices, int) and not isinstance(choices, bool) and choices > 1
    if no_store or several:
        return Lookup(digest="", ttl=ttl, read=False, store=False)
    material = {
        "v": 1,
        "endpoint": consumer.endpoint,
        "route": (route.name, route.provider.name, route.provider_model),
        "scope": scope,
        # Client headers relayed upstream (feature flags) change the answer.
        "headers": [consumer.headers.get(name, b"").decode("latin-1") for name in forwarded],
        "request": {name: value for name, value in payload.items() if name not in DELIVERY_FIELDS},
    }
    digest = hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return Lookup(digest=digest, ttl=ttl, read=b"no-cache" not in directives, store=True)


# --- the stores --------------------------------------------------------------------


class MemoryStore:
    """Embedded mode: entries in this process, least recently used out first."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self.size = 0

    def get(self, digest: str, now: float) -> bytes | None:
        entry = self.entries.get(digest)
        if entry is None:
            return None
        if entry[1] <= now:
            self._drop(digest)
            return None
        self.entries.move_to_end(digest)
        return entry[0]

    def put(self, digest: str, value: bytes, ttl: int, now: float) -> None:
        self._drop(digest)
        if len(value) > self.max_bytes or self.max_entries < 1:
            return
        self.entries[digest] = (value, now + ttl)
        self.size += len(value)
        while len(self.entries) > self.max_entries or self.size > self.max_bytes:
            self._drop(next(iter(self.entries)))

    def _drop(self, digest: str) -> None:
        entry = self.entries.pop(digest, None)
        if entry is not None:
            self.size -= len(entry[0])


_memory: MemoryStore | None = None


def memory() -> MemoryStore:
    global _memory
    if _memory is None:
        _memory = MemoryStore(
            settings.GATEWAY_CACHE_MEMORY_MAX_ENTRIES, settings.GATEWAY_CACHE_MEMORY_MAX_BYTES
        )
    return _memory


async def admit(plan: AdmissionPlan, now: float, lookup: Lookup) -> Admission:
    """Admission with the lookup in the same round trip; fills ``lookup.found``."""
    limits = backend()
    if isinstance(limits, SHARED_BACKENDS):
        admission, lookup.found = await limits.admit_and_get(plan, now, lookup.redis_key)
        return admission
    admission = await limits.admit(plan, now)
    lookup.found = memory().get(lookup.digest, now)
    return admission


async def fetch(lookup: Lookup) -> None:
    """The lookup alone (a caller without limits: no admission trip to share)."""
    limits = backend()
    if not isinstance(limits, SHARED_BACKENDS):
        lookup.found = memory().get(lookup.digest, time.time())
        return
    try:
        found = await limits.get(lookup.redis_key)
    except Exception:
        logger.warning("response cache unavailable; answering from the provider", exc_info=True)
        return
    lookup.found = found if isinstance(found, bytes) else None


async def settle(
    plan: AdmissionPlan, adjustments: dict[str, int], now: float, lookup: Lookup, value: bytes
) -> None:
    """Settlement with the store in the same round trip."""
    limits = backend()
    if isinstance(limits, SHARED_BACKENDS):
        await limits.settle_and_set(plan, adjustments, now, lookup.redis_key, value, lookup.ttl)
        return
    await limits.settle(plan, adjustments, now)
    memory().put(lookup.digest, value, lookup.ttl, now)


async def put(lookup: Lookup, value: bytes) -> None:
    """The store alone (a caller without limits: no settlement trip to share)."""
    limits = backend()
    if not isinstance(limits, SHARED_BACKENDS):
        memory().put(lookup.digest, value, lookup.ttl, time.time())
        return
    try:
        await limits.set(lookup.redis_key, value, lookup.ttl)
    except Exception:
        logger.warning("response cache unavailable; the answer was not stored", exc_info=True)


# --- keeping a copy of the answer ---------------------------------------------------


class Keeper:
    """Collects the answer the client gets, to store it once it is complete."""

    def __init__(self, wire: WireFormat) -> None:
        self.wire = wire
        self.limit = settings.GATEWAY_CACHE_MAX_ENTRY_BYTES
        self.body: bytes | None = None
        self.streamed: list[bytes] | None = None

    def complete(self, body: bytes) -> None:
        """A whole answer, as sent."""
        self.body = body if len(body) <= self.limit else None

    def stream(self, relay: StreamRelay) -> KeptStream:
        """``relay``, with a copy of what it writes kept."""
        self.body = self.streamed = None
        return KeptStream(relay, self)

    def entry(self, usage: Usage | None) -> bytes | None:
        """The answer to store, or None (too large, incomplete, not understood)."""
        if self.body is not None:
            return self.body
        if self.streamed is None:
            return None
        try:
            body = self.wire.collect(b"".join(self.streamed), usage)
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.warning("a streamed answer could not be read back; not cached", exc_info=True)
            return None
        return body if body is not None and len(body) <= self.limit else None


class KeptStream(RelayWrapper):
    """A stream relay whose output is also copied (bounded) for the cache."""

    def __init__(self, inner: StreamRelay, keeper: Keeper) -> None:
        super().__init__(inner)
        self.keeper = keeper
        self._parts: list[bytes] | None = []
        self._size = 0

    def _copy(self, data: bytes) -> None:
        if self._parts is None or not data:
            return
        self._size += len(data)
        if self._size > self.keeper.limit:
            self._parts = None  # too large to keep: relayed, not stored
        else:
            self._parts.append(data)

    def feed(self, chunk: bytes) -> bytes:
        out = self.inner.feed(chunk)
        self._copy(out)
        return out

    def flush(self) -> bytes:
        out = self.inner.flush()
        self._copy(out)
        # The upstream stream ended without an error: the copy is whole.
        self.keeper.streamed = self._parts
        return out


# --- the wire formats: a stream read back, an answer replayed as a stream ------------


def _events(stream: bytes) -> list[tuple[str, bytes]]:
    parser = SSEParser()
    return [(event.event, event.data) for event in (*parser.feed(stream), *parser.finish())]


class WireFormat:
    """How one front door's answers are collected from and replayed as streams."""

    def collect(self, stream: bytes, usage: Usage | None) -> bytes | None:
        """The whole answer a complete client stream amounts to (None: incomplete)."""
        raise NotImplementedError

    def replay(self, body: bytes, payload: dict[str, Any]) -> bytes:
        """A stored answer as the client's stream."""
        raise NotImplementedError


class OpenAIChat(WireFormat):
    """Chat completions and their chunk streams."""

    def collect(self, stream: bytes, usage: Usage | None) -> bytes | None:
        done = False
        head: dict[str, Any] | None = None
        choices: dict[int, dict[str, Any]] = {}
        for _, data in _events(stream):
            if data == b"[DONE]":
                done = True
                continue
            chunk = orjson.loads(data)
            if "error" in chunk:
                return None
            head = head or chunk
            if isinstance(chunk.get("usage"), dict):
                head = {**head, "usage": chunk["usage"]}
            for part in chunk.get("choices") or ():
                self._merge(choices.setdefault(part.get("index", 0), _new_choice(part)), part)
        if not done or head is None or not choices:
            return None
        if any(choice["finish_reason"] is None for choice in choices.values()):
            return None
        completion: dict[str, Any] = {
            "id": head.get("id"),
            "object": "chat.completion",
            "created": head.get("created"),
            "model": head.get("model"),
            "choices": [_finished(choices[index]) for index in sorted(choices)],
        }
        if head.get("system_fingerprint") is not None:
            completion["system_fingerprint"] = head["system_fingerprint"]
        if isinstance(head.get("usage"), dict):
            completion["usage"] = head["usage"]
        elif usage is not None:
            completion["usage"] = usage_dict(usage)
        return orjson.dumps(completion)

    @staticmethod
    def _merge(choice: dict[str, Any], part: dict[str, Any]) -> None:
        delta = part.get("delta") or {}
        message = choice["message"]
        for name in ("content", "refusal"):
            if isinstance(delta.get(name), str):
                message[name] = (message.get(name) or "") + delta[name]
        for call in delta.get("tool_calls") or ():
            calls = choice["calls"]
            slot = calls.setdefault(
                call.get("index", len(calls)),
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if call.get("id"):
                slot["id"] = call["id"]
            function = call.get("function") or {}
            slot["function"]["name"] += function.get("name") or ""
            slot["function"]["arguments"] += function.get("arguments") or ""
        logprobs = part.get("logprobs")
        if isinstance(logprobs, dict):
            for name, items in logprobs.items():
                if isinstance(items, list):
                    kept = choice.setdefault("logprobs", {})
                    kept[name] = [*(kept.get(name) or []), *items]
        if part.get("finish_reason"):
            choice["finish_reason"] = part["finish_reason"]

    def replay(self, body: bytes, payload: dict[str, Any]) -> bytes:
        completion = orjson.loads(body)
        head = {
            "id": completion.get("id"),
            "object": "chat.completion.chunk",
            "created": completion.get("created"),
            "model": completion.get("model"),
        }
        if completion.get("system_fingerprint") is not None:
            head["system_fingerprint"] = completion["system_fingerprint"]
        chunks = []
        for choice in completion["choices"]:
            index = choice.get("index", 0)
            message = choice.get("message") or {}
            delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
            if message.get("refusal"):
                delta["refusal"] = message["refusal"]
            chunks.append(_chunk(head, index, delta, logprobs=choice.get("logprobs")))
            calls = message.get("tool_calls") or []
            if calls:
                delta = {"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}
                chunks.append(_chunk(head, index, delta))
            chunks.append(_chunk(head, index, {}, finish_reason=choice.get("finish_reason")))
        options = payload.get("stream_options")
        if (
            isinstance(options, dict)
            and options.get("include_usage") is True
            and completion.get("usage") is not None
        ):
            chunks.append({**head, "choices": [], "usage": completion.get("usage")})
        return b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks) + (
            b"data: [DONE]\n\n"
        )


def _new_choice(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": part.get("index", 0),
        "message": {"role": "assistant", "content": None},
        "calls": {},
        "finish_reason": None,
    }


def _finished(choice: dict[str, Any]) -> dict[str, Any]:
    message = choice["message"]
    if choice["calls"]:
        message["tool_calls"] = [choice["calls"][index] for index in sorted(choice["calls"])]
    return {
        "index": choice["index"],
        "message": message,
        "logprobs": choice.get("logprobs"),
        "finish_reason": choice["finish_reason"],
    }


def _chunk(
    head: dict[str, Any],
    index: int,
    delta: dict[str, Any],
    *,
    finish_reason: str | None = None,
    logprobs: Any = None,
) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
    return {**head, "choices": [choice]}


class AnthropicMessages(WireFormat):
    """Anthropic messages and their event streams."""

    def collect(self, stream: bytes, usage: Usage | None) -> bytes | None:
        message: dict[str, Any] | None = None
        blocks: dict[int, dict[str, Any]] = {}
        partial: dict[int, str] = {}
        stopped = False
        for _, data in _events(stream):
            event = orjson.loads(data)
            kind = event.get("type")
            if kind == "message_start":
                message = dict(event["message"])
            elif kind == "content_block_start":
                blocks[event["index"]] = dict(event["content_block"])
            elif kind == "content_block_delta":
                self._merge(blocks[event["index"]], partial, event["index"], event["delta"])
            elif kind == "content_block_stop" and event["index"] in partial:
                text = partial.pop(event["index"])
                blocks[event["index"]]["input"] = orjson.loads(text) if text.strip() else {}
            elif kind == "message_delta" and message is not None:
                message.update(event.get("delta") or {})
                message["usage"] = {**(message.get("usage") or {}), **(event.get("usage") or {})}
            elif kind == "message_stop":
                stopped = True
            elif kind == "error":
                return None
        if message is None or not stopped or partial:
            return None
        message["content"] = [blocks[index] for index in sorted(blocks)]
        return orjson.dumps(message)

    @staticmethod
    def _merge(
        block: dict[str, Any], partial: dict[int, str], index: int, delta: dict[str, Any]
    ) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = (block.get("text") or "") + delta.get("text", "")
        elif kind == "input_json_delta":
            partial[index] = partial.get(index, "") + delta.get("partial_json", "")
        elif kind == "thinking_delta":
            block["thinking"] = (block.get("thinking") or "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        elif kind == "citations_delta":
            block["citations"] = [*(block.get("citations") or []), delta.get("citation")]

    def replay(self, body: bytes, payload: dict[str, Any]) -> bytes:
        message = orjson.loads(body)
        usage = message.get("usage") or {}
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 0},
        }
        out = [
            _event("message_start", {"type": "message_start", "message": start}),
            _event("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(message.get("content") or []):
            opened, deltas = _block_events(block)
            out.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opened},
                )
            )
            for delta in deltas:
                out.append(
                    _event(
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        delta = {
            "stop_reason": message.get("stop_reason"),
            "stop_sequence": message.get("stop_sequence"),
        }
        out.append(
            _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return encode(orjson.dumps(data), name)


def _block_events(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A content block as its opening and its deltas (whole blocks for other kinds)."""
    kind = block.get("type")
    if kind == "text":
        opened = {key: value for key, value in block.items() if key != "citations"}
        return {**opened, "text": ""}, [{"type": "text_delta", "text": block.get("text", "")}]
    if kind in ("tool_use", "server_tool_use"):
        arguments = orjson.dumps(block.get("input") or {}).decode()
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": arguments}]
    if kind == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return {**block, "thinking": "", "signature": ""}, deltas
    return block, []


OPENAI_CHAT = OpenAIChat()
ANTHROPIC_MESSAGES = AnthropicMessages()


# --- a hit ---------------------------------------------------------------------------


async def serve(
    consumer: InferenceConsumer,
    wire: WireFormat,
    body: bytes,
    *,
    stream: bool,
    payload: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
    guard: ResponseGuard | None = None,
) -> bool:
    """Answer from ``body``; False (nothing sent) when the entry cannot be replayed.

    ``guard``: the caller's response guardrails as they are now. The entry was
    checked under the policies of the request that stored it (another key of
    the team, or before a policy changed), so it is checked again before
    anything is sent: a blocking finding refuses the hit in the client's
    envelope, a redacting one rewrites it (a stream replays the checked
    answer)."""
    from proxy.streaming import stream_headers

    if guard is not None:
        body = guard.complete(body)
    headers = [*headers, (HEADER, b"hit")]
    if not stream:
        await consumer.send_json(200, body, headers)
        return True
    try:
        replayed = wire.replay(body, payload)
    except (ValueError, TypeError, KeyError, AttributeError):
        logger.warning("a cached answer could not be replayed; answering from the provider")
        return False
    await consumer.start_response(200, stream_headers(consumer, headers))
    await consumer.send_chunk(replayed, more=False)
    return True
