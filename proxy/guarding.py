"""Guardrails on the request path: the client's text checked before routing,
the answer's text checked on its way back, streamed or not.

The snapshot carries each key's resolved :class:`~governance.guardrails.Guardrails`;
a key without any pays nothing here (no wrapper, no parsing). Answers are
checked in the *client's* format, after translation, so one implementation
per client format serves passthrough and translated answers alike.

In a stream, the text of content deltas is held back by a small window
(:data:`WINDOW` characters) so that a match split across deltas is still
seen whole: a delta leaves once enough text follows it and no match is open
across it. A delta whose text changes (redaction) is rewritten; every other
event leaves byte for byte. Any other event (a finish, a block's end, usage,
``[DONE]``; not a keep-alive) first releases what is held, checked to the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from governance.guardrails import (
    BLOCK,
    CONTEXT_CHARS,
    FLAG,
    REDACT,
    REQUEST,
    RESPONSE,
    Finding,
    Guardrails,
    Scanner,
    redact,
)
from proxy.errors import GatewayError
from proxy.translation import RelayWrapper

if TYPE_CHECKING:
    from proxy.chat import ChatConsumer
    from proxy.translation import StreamRelay

# Characters of streamed text held back: more than the longest match a
# detector needs before it can tell (an IBAN with spaces, 42; an AWS secret
# after its "=", 42; an API key, 23 to 40).
WINDOW = 64
# Held text is checked again once this much more has come (not at every
# delta): fewer scans, a little more text held.
STEP = 32

# The payload fields holding the client's text, and the keys inside them that
# never do (roles, ids, names, images and files).
TEXT_FIELDS = ("system", "messages", "prompt", "input", "instructions")
NOT_TEXT = frozenset(
    {
        "role",
        "type",
        "id",
        "tool_call_id",
        "tool_use_id",
        "name",
        "image_url",
        "source",
        "url",
        "file_data",
        "file_id",
        "cache_control",
        "detail",
        "media_type",
        "format",
    }
)


def violation(direction: str, rule: str) -> GatewayError:
    """The refusal naming the rule (never the matched text)."""
    return GatewayError(
        400,
        f"The {direction} was blocked by the guardrail rule '{rule}' (guardrail_violation).",
        code="guardrail_violation",
    )


@dataclass
class Recorder:
    """The rules that fired, for the request's usage record (``guardrail_flags``)."""

    entry: dict[str, Any]
    seen: set[str] = field(default_factory=set)

    def note(self, direction: str, finding: Finding) -> None:
        mark = f"{direction}:{finding.action}:{finding.rule}"
        if mark not in self.seen:
            self.seen.add(mark)
            self.entry.setdefault("guardrail_flags", []).append(mark)

    def refuse(self, direction: str, rule: str) -> GatewayError:
        self.note(direction, Finding(0, 0, rule, BLOCK, ""))
        return violation(direction, rule)


def checked_text(text: str, scanner: Scanner, recorder: Recorder, direction: str) -> str:
    """``text`` redacted where its findings say so; raises on a blocking one."""
    findings = scanner.scan(text)
    if not findings:
        return text
    for finding in findings:
        if finding.action == BLOCK:
            raise recorder.refuse(direction, finding.rule)
        recorder.note(direction, finding)
    return redact(text, findings)


def request_texts(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's fields that hold the client's text (:data:`TEXT_FIELDS`)."""
    return {name: payload[name] for name in TEXT_FIELDS if payload.get(name) is not None}


def rewrite_strings(value: Any, visit: Callable[[str], str]) -> Any:
    """``value`` with each text string replaced by ``visit``'s result; the
    same objects where nothing changed."""
    if isinstance(value, str):
        return visit(value)
    if isinstance(value, list):
        copy: list[Any] | None = None
        for index, item in enumerate(value):
            new = rewrite_strings(item, visit)
            if new is not item:
                copy = copy or list(value)
                copy[index] = new
        return value if copy is None else copy
    if isinstance(value, dict):
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if key in NOT_TEXT:
                continue
            new = rewrite_strings(item, visit)
            if new is not item:
                changed = changed or dict(value)
                changed[key] = new
        return value if changed is None else changed
    return value


async def check_request(
    consumer: ChatConsumer,
    guardrails: Guardrails,
    payload: dict[str, Any],
    *,
    limits: bool = True,
) -> dict[str, Any]:
    """The payload to forward: refused (raises), redacted, or as it came
    (``limits=False``: the text only, not the message and token limits)."""
    recorder = Recorder(consumer.entry)
    if limits and guardrails.max_messages is not None:
        messages = payload.get("messages")
        if not isinstance(messages, list):
            messages = payload.get("input") if isinstance(payload.get("input"), list) else []
        if len(messages) > guardrails.max_messages:
            raise recorder.refuse(REQUEST, "max_messages")
    if limits and guardrails.max_input_tokens is not None:
        counted = await asyncio.to_thread(consumer.count_input, payload)
        if counted > guardrails.max_input_tokens:
            raise recorder.refuse(REQUEST, "max_input_tokens")
    scanner = guardrails.request
    if not scanner:
        return payload
    assert scanner is not None

    def visit(text: str) -> str:
        return checked_text(text, scanner, recorder, REQUEST)

    texts = request_texts(payload)
    checked = rewrite_strings(texts, visit)
    return payload if checked is texts else {**payload, **checked}


# --- answers, by client format -------------------------------------------------------


Slot = tuple[dict[str, Any], str]  # a JSON object and the key of a text in it


class Shape:
    """Where the text is in one client format's answers and stream events."""

    def texts(self, body: Any) -> Iterator[Slot]:
        """The text slots of a whole answer."""
        raise NotImplementedError

    def delta(self, data: dict[str, Any]) -> tuple[Any, Slot] | None:
        """For a content-delta event: its channel (choice or block) and text slot."""
        raise NotImplementedError


class OpenAIShape(Shape):
    """Chat completions (``message.content``, ``delta.content``) or, with
    ``field="text"``, legacy completions (``text`` in both)."""

    def __init__(self, *, legacy: bool) -> None:
        self.legacy = legacy

    def texts(self, body: Any) -> Iterator[Slot]:
        for choice in body.get("choices") or () if isinstance(body, dict) else ():
            if not isinstance(choice, dict):
                continue
            holder = choice if self.legacy else choice.get("message")
            key = "text" if self.legacy else "content"
            if isinstance(holder, dict) and isinstance(holder.get(key), str):
                yield holder, key

    def delta(self, data: dict[str, Any]) -> tuple[Any, Slot] | None:
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            return None
        choice = choices[0]
        if not isinstance(choice, dict):
            return None
        holder = choice if self.legacy else choice.get("delta")
        key = "text" if self.legacy else "content"
        if isinstance(holder, dict) and isinstance(holder.get(key), str) and holder[key]:
            return choice.get("index", 0), (holder, key)
        return None


class AnthropicShape(Shape):
    """Messages: text blocks, and ``text_delta`` events by block index."""

    def texts(self, body: Any) -> Iterator[Slot]:
        for block in body.get("content") or () if isinstance(body, dict) else ():
            if isinstance(block, dict) and block.get("type") == "text":
                if isinstance(block.get("text"), str):
                    yield block, "text"

    def delta(self, data: dict[str, Any]) -> tuple[Any, Slot] | None:
        if data.get("type") != "content_block_delta":
            return None
        delta = data.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "text_delta":
            if isinstance(delta.get("text"), str) and delta["text"]:
                return data.get("index", 0), (delta, "text")
        return None


OPENAI_CHAT = OpenAIShape(legacy=False)
OPENAI_TEXT = OpenAIShape(legacy=True)
ANTHROPIC = AnthropicShape()


class ResponseGuard:
    """The response side of one request's guardrails."""

    def __init__(self, scanner: Scanner, shape: Shape, recorder: Recorder) -> None:
        self.scanner = scanner
        self.shape = shape
        self.recorder = recorder

    def complete(self, body: bytes) -> bytes:
        """A whole answer (the client's body), checked."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        changed = False
        for holder, key in self.shape.texts(data):
            text = holder[key]
            new = checked_text(text, self.scanner, self.recorder, RESPONSE)
            if new is not text:
                holder[key] = new
                changed = True
        return orjson.dumps(data) if changed else body

    def stream(self, relay: StreamRelay) -> GuardedStream:
        return GuardedStream(relay, self)


def response_guard(consumer: ChatConsumer, guardrails: Guardrails | None) -> ResponseGuard | None:
    """The response check of a request, or None when no response policy applies."""
    shape = consumer.response_shape
    if guardrails is None or guardrails.response is None or shape is None:
        return None
    return ResponseGuard(guardrails.response, shape, Recorder(consumer.entry))


@dataclass(slots=True)
class _Held:
    event: bytes  # the event as it came, without its blank line
    data: dict[str, Any]
    slot: Slot
    text: str


@dataclass(slots=True)
class _Channel:
    """One choice's (or content block's) text not yet sent, and what was sent just before it."""

    held: list[_Held] = field(default_factory=list)
    text: str = ""
    context: str = ""


class GuardedStream(RelayWrapper):
    """A client stream with its content deltas checked (see the module's docstring)."""

    def __init__(self, inner: StreamRelay, guard: ResponseGuard) -> None:
        super().__init__(inner)
        self.guard = guard
        self._pending = b""
        self._channels: dict[Any, _Channel] = {}

    def feed(self, chunk: bytes) -> bytes:
        return self._events(self.inner.feed(chunk))

    def flush(self) -> bytes:
        out = self._events(self.inner.flush())
        rest, self._pending = self._pending, b""
        return out + self._release_all() + rest

    def _events(self, data: bytes) -> bytes:
        if not data:
            return b""
        data = self._pending + data if self._pending else data
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        complete, self._pending = data[:end], data[end + 2 :]
        out: list[bytes] = []
        for event in complete.split(b"\n\n"):
            out.append(self._event(event))
        return b"".join(out)

    def _event(self, event: bytes) -> bytes:
        if event.startswith((b":", b"event: ping")):
            # Keep-alives say nothing about the text: they pass, nothing is released.
            return event + b"\n\n"
        at = event.find(b"data: {")
        data = None
        if at >= 0:
            try:
                data = orjson.loads(event[at + 6 :])
            except orjson.JSONDecodeError:
                data = None
        found = self.guard.shape.delta(data) if isinstance(data, dict) else None
        if found is None:
            return self._release_all() + event + b"\n\n"
        channel_id, slot = found
        channel = self._channels.setdefault(channel_id, _Channel())
        text = slot[0][slot[1]]
        channel.held.append(_Held(event, data, slot, text))  # type: ignore[arg-type]
        channel.text += text
        return self._release(channel, final=False)

    def _release_all(self) -> bytes:
        if not self._channels:
            return b""
        return b"".join(self._release(channel, final=True) for channel in self._channels.values())

    def _release(self, channel: _Channel, *, final: bool) -> bytes:
        if not channel.held or (not final and len(channel.text) < WINDOW + STEP):
            return b""
        offset = len(channel.context)
        findings = []
        for finding in self.guard.scanner.scan(channel.context + channel.text):
            if finding.end <= offset:
                continue  # in text already sent
            if finding.action == BLOCK:
                raise self.guard.recorder.refuse(RESPONSE, finding.rule)
            findings.append(
                Finding(
                    max(0, finding.start - offset),
                    finding.end - offset,
                    finding.rule,
                    finding.action,
                    finding.placeholder,
                )
            )
        count, cut = self._cut(channel, findings, final)
        if not count:
            return b""
        out = []
        start = 0
        for held in channel.held[:count]:
            end = start + len(held.text)
            out.append(self._rewritten(held, start, end, findings))
            start = end
        for finding in findings:
            if finding.start < cut and finding.action in (REDACT, FLAG):
                self.guard.recorder.note(RESPONSE, finding)
        sent = channel.text[:cut]
        channel.context = (channel.context + sent)[-CONTEXT_CHARS:]
        channel.text = channel.text[cut:]
        del channel.held[:count]
        return b"".join(out)

    @staticmethod
    def _cut(channel: _Channel, findings: list[Finding], final: bool) -> tuple[int, int]:
        """How many held deltas may leave, and where their text ends: enough
        text after them, no finding across their end."""
        limit = len(channel.text) if final else len(channel.text) - WINDOW
        while True:
            count, cut = 0, 0
            for held in channel.held:
                if cut + len(held.text) > limit:
                    break
                cut += len(held.text)
                count += 1
            across = [f.start for f in findings if f.start < cut < f.end]
            if not across:
                return count, cut
            limit = min(across)

    @staticmethod
    def _rewritten(held: _Held, start: int, end: int, findings: list[Finding]) -> bytes:
        """The event of a delta covering ``[start, end)`` of the channel's text,
        its redacted parts replaced (a placeholder goes where its match starts)."""
        pieces = []
        position = start
        touched = False
        for finding in findings:
            if finding.action != REDACT or finding.end <= start or finding.start >= end:
                continue
            touched = True
            if finding.start >= position:
                pieces.append(held.text[position - start : finding.start - start])
                pieces.append(finding.placeholder)
            position = max(position, min(finding.end, end))
        if not touched:
            return held.event + b"\n\n"
        pieces.append(held.text[position - start :])
        holder, key = held.slot
        holder[key] = "".join(pieces)
        prefix = held.event[: held.event.find(b"data: {") + 6]
        return prefix + orjson.dumps(held.data) + b"\n\n"
