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
``[DONE]``; not a keep-alive) first releases what is held, checked to the end;
an event repeating a whole text (the Responses API's ``….done`` and
``response.completed``) is checked as a whole answer.

Tool calls' arguments are JSON text, streamed in fragments: each call is a
channel of its own, scanned with JSON's escape sequences blanked (so ``\\n``
reads as the space it stands for), and a redaction replaces a match inside a
JSON string by its placeholder (no quote or backslash in it), or a number
by its placeholder quoted, so the concatenated arguments stay valid JSON. A
match that would take a string's closing quote (or more than one number)
with it cannot be redacted that way and blocks instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Iterator
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
    return applied(text, findings, recorder, direction) if findings else text


def applied(text: str, findings: list[Finding], recorder: Recorder, direction: str) -> str:
    """``text`` with ``findings`` acted on: recorded, redacted; raises on a blocking one."""
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
# A slot and whether its text is JSON (a tool call's arguments) rather than prose.
Part = tuple[Slot, bool]
# A content delta: its channel (choice, tool call or block), text slot, JSON or not.
Delta = tuple[Any, Slot, bool]

# One escape sequence of a JSON string (a lone backslash at the end: one cut short).
JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.|\Z)", re.DOTALL)


def json_view(text: str) -> str:
    """``text`` (JSON) with each escape sequence blanked to as many spaces: the
    detectors see ``\\n`` as the space it stands for, and offsets stay those of
    ``text``."""
    if "\\" not in text:
        return text
    return JSON_ESCAPE.sub(lambda match: " " * len(match.group()), text)


# What tells where JSON strings are: their quotes, and escapes (a backslash
# alone: an escape cut short, its character still to come).
JSON_LEXEME = re.compile(r'\\[\s\S]?|"')
# What a redaction outside a string may replace: one number, nothing around it.
JSON_NUMBER = re.compile(r"[-+.\deE]+")
NUMBER_CHARACTERS = frozenset("-+.0123456789eE")
# Outside any string, no escape pending: where a JSON text starts.
OUTSIDE = (False, False)


def string_state(
    text: str, start: int, end: int, state: tuple[bool, bool] = OUTSIDE
) -> tuple[bool, bool]:
    """Whether ``text[end]`` is inside a JSON string (and after a backslash),
    reading ``text[start:end]`` from ``state`` at ``start``."""
    inside, escaped = state
    if escaped and start < end:
        start += 1
        escaped = False
    for match in JSON_LEXEME.finditer(text, start, end):
        lexeme = match.group()
        if lexeme == '"':
            inside = not inside
        elif len(lexeme) == 1:
            escaped = True
    return inside, escaped


def json_findings(
    scanner: Scanner, text: str, base: int = 0, state: tuple[bool, bool] = OUTSIDE
) -> list[Finding]:
    """The findings in the JSON text ``text`` (``state`` at ``base``: where the
    text not yet sent starts), each redaction widened to whole escape
    sequences. A redaction inside a string keeps its placeholder (no quote or
    backslash in it); one outside (a number) gets it quoted, a JSON string;
    one that would cut through the structure (take a string's quote, or
    finish a number already sent) blocks instead: arguments stay valid JSON."""
    view = json_view(text)
    findings = scanner.scan(view)
    if not findings:
        return findings
    out = []
    for finding in findings:
        if finding.action == REDACT and finding.end > base:
            start, end = finding.start, finding.end
            if view is not text:
                for match in JSON_ESCAPE.finditer(text, max(0, start - 6), min(len(text), end + 6)):
                    if match.start() < start < match.end():
                        start = match.start()
                    if match.start() < end < match.end():
                        end = match.end()
            inside = string_state(text, base, max(start, base), state)[0]
            if not inside:
                # The whole number, its sign and exponent too: a placeholder
                # for part of one would leave a "-" or digits beside a string.
                while start > 0 and view[start - 1] in NUMBER_CHARACTERS:
                    start -= 1
                while end < len(view) and view[end] in NUMBER_CHARACTERS:
                    end += 1
            placeholder = finding.placeholder if inside else f'"{finding.placeholder}"'
            action = REDACT
            if '"' in view[start:end] or (
                not inside and (start < base or not JSON_NUMBER.fullmatch(view, start, end))
            ):
                action = BLOCK
            finding = Finding(start, end, finding.rule, action, placeholder)
        out.append(finding)
    return out


def checked_arguments(value: Any, scanner: Scanner, recorder: Recorder) -> Any:
    """A tool call's arguments (JSON text, or the object itself) redacted inside
    their strings where the findings say so; raises on a blocking one."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    findings = json_findings(scanner, text)
    if not findings:
        return value
    redacted = applied(text, findings, recorder, RESPONSE)
    if redacted is text:
        return value
    try:
        parsed = orjson.loads(redacted)
    except orjson.JSONDecodeError:
        if isinstance(value, str) and not _is_json(value):
            return redacted  # not JSON to begin with: redacted as text
        raise recorder.refuse(RESPONSE, findings[0].rule) from None
    return redacted if isinstance(value, str) else parsed


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class Shape:
    """Where the text is in one client format's answers and stream events."""

    def parts(self, body: Any) -> Iterator[Part]:
        """The text and argument slots of a whole answer."""
        raise NotImplementedError

    def deltas(self, data: dict[str, Any]) -> tuple[Delta, ...]:
        """The text pieces of a content-delta event (none: another kind of event)."""
        raise NotImplementedError

    def wholes(self, data: dict[str, Any]) -> Iterator[Part]:
        """Whole texts repeated by a stream's other events (a summary at the end)."""
        return iter(())


class OpenAIShape(Shape):
    """Chat completions (``message.content``, ``delta.content``, and tool calls'
    ``function.arguments``) or, with ``legacy``, text completions (``text``)."""

    def __init__(self, *, legacy: bool) -> None:
        self.legacy = legacy

    def parts(self, body: Any) -> Iterator[Part]:
        for choice in body.get("choices") or () if isinstance(body, dict) else ():
            if not isinstance(choice, dict):
                continue
            holder = choice if self.legacy else choice.get("message")
            key = "text" if self.legacy else "content"
            if not isinstance(holder, dict):
                continue
            if isinstance(holder.get(key), str):
                yield (holder, key), False
            if not self.legacy:
                for _, slot in _calls(holder):
                    yield slot, True

    def deltas(self, data: dict[str, Any]) -> tuple[Delta, ...]:
        choices = data.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            return ()
        choice = choices[0]
        if not isinstance(choice, dict):
            return ()
        index = choice.get("index", 0)
        holder = choice if self.legacy else choice.get("delta")
        key = "text" if self.legacy else "content"
        if not isinstance(holder, dict):
            return ()
        text = holder.get(key)
        plain: tuple[Delta, ...] = ()
        if isinstance(text, str) and text:
            plain = ((index, (holder, key), False),)
        if self.legacy or ("tool_calls" not in holder and "function_call" not in holder):
            return plain
        found = list(plain)
        for call, (function, name) in _calls(holder):
            if function[name]:
                found.append((("call", index, call), (function, name), True))
        return tuple(found)


def _calls(message: dict[str, Any]) -> Iterator[tuple[Any, Slot]]:
    """The ``function.arguments`` of a message's (or delta's) tool calls, by the
    call's index, and of the legacy ``function_call``."""
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for position, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                yield call.get("index", position), (function, "arguments")
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        yield "function_call", (legacy, "arguments")


class AnthropicShape(Shape):
    """Messages: text blocks and tool calls' ``input``; ``text_delta`` and
    ``input_json_delta`` events by block index."""

    def parts(self, body: Any) -> Iterator[Part]:
        for block in body.get("content") or () if isinstance(body, dict) else ():
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                yield (block, "text"), False
            elif kind in ("tool_use", "server_tool_use") and "input" in block:
                yield (block, "input"), True

    def deltas(self, data: dict[str, Any]) -> tuple[Delta, ...]:
        if data.get("type") != "content_block_delta":
            return ()
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return ()
        kind = delta.get("type")
        if kind == "text_delta":
            if isinstance(delta.get("text"), str) and delta["text"]:
                return ((data.get("index", 0), (delta, "text"), False),)
        elif kind == "input_json_delta":
            if isinstance(delta.get("partial_json"), str) and delta["partial_json"]:
                return ((data.get("index", 0), (delta, "partial_json"), True),)
        return ()


class ResponsesShape(Shape):
    """The Responses API: ``output_text`` parts and ``function_call`` arguments
    in ``output[]``; ``response.output_text.delta`` and
    ``response.function_call_arguments.delta`` events, and the events that
    repeat the whole text once it is done (``….done``, ``response.completed``)."""

    def parts(self, body: Any) -> Iterator[Part]:
        output = body.get("output") if isinstance(body, dict) else None
        for item in output if isinstance(output, list) else ():
            yield from _item_parts(item)

    def deltas(self, data: dict[str, Any]) -> tuple[Delta, ...]:
        kind = data.get("type")
        if kind == "response.output_text.delta":
            json = False
            channel: Any = ("text", data.get("output_index"), data.get("content_index"))
        elif kind == "response.function_call_arguments.delta":
            json = True
            channel = ("call", data.get("output_index"))
        else:
            return ()
        if isinstance(data.get("delta"), str) and data["delta"]:
            return ((channel, (data, "delta"), json),)
        return ()

    def wholes(self, data: dict[str, Any]) -> Iterator[Part]:
        kind = data.get("type")
        if kind == "response.output_text.done" and isinstance(data.get("text"), str):
            yield (data, "text"), False
        elif kind == "response.function_call_arguments.done":
            if isinstance(data.get("arguments"), str):
                yield (data, "arguments"), True
        elif kind in ("response.content_part.added", "response.content_part.done"):
            part = data.get("part")
            if isinstance(part, dict) and part.get("type") == "output_text":
                if isinstance(part.get("text"), str):
                    yield (part, "text"), False
        elif kind in ("response.output_item.added", "response.output_item.done"):
            yield from _item_parts(data.get("item"))
        elif isinstance(data.get("response"), dict):  # created, completed, incomplete, failed
            yield from self.parts(data["response"])


def _item_parts(item: Any) -> Iterator[Part]:
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        content = item.get("content")
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "output_text":
                if isinstance(part.get("text"), str):
                    yield (part, "text"), False
    elif kind == "function_call" and isinstance(item.get("arguments"), str):
        yield (item, "arguments"), True


OPENAI_CHAT = OpenAIShape(legacy=False)
OPENAI_TEXT = OpenAIShape(legacy=True)
ANTHROPIC = AnthropicShape()
RESPONSES = ResponsesShape()


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
        return orjson.dumps(data) if self.check(self.shape.parts(data)) else body

    def check(self, parts: Iterable[Part]) -> bool:
        """Check each slot in place (raises on a blocking finding); whether any changed."""
        changed = False
        for (holder, key), json in parts:
            value = holder[key]
            if json:
                new = checked_arguments(value, self.scanner, self.recorder)
            else:
                new = checked_text(value, self.scanner, self.recorder, RESPONSE)
            if new is not value:
                holder[key] = new
                changed = True
        return changed

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
    """One choice's (content block's, tool call's) text not yet sent, and what
    was sent just before it; ``json``: the text is a tool call's arguments."""

    json: bool = False
    held: list[_Held] = field(default_factory=list)
    text: str = ""
    context: str = ""
    # JSON channels: inside a string or not (and after a backslash) where ``text`` starts.
    state: tuple[bool, bool] = OUTSIDE


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
        if not isinstance(data, dict):
            return self._release_all() + event + b"\n\n"
        found = self.guard.shape.deltas(data)
        if not found:
            out = self._release_all()
            if self.guard.check(self.guard.shape.wholes(data)):
                return out + event[: at + 6] + orjson.dumps(data) + b"\n\n"
            return out + event + b"\n\n"
        if len(found) > 1:
            # Several texts in one event (rare): each checked to its end at once.
            return self._release_all() + self._alone(event, at, data, found)
        return self._release(self._hold(event, data, found[0]), final=False)

    def _hold(self, event: bytes, data: dict[str, Any], delta: Delta) -> _Channel:
        """The channel of ``delta``, holding it."""
        channel_id, slot, json = delta
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = _Channel(json)
        text = slot[0][slot[1]]
        channel.held.append(_Held(event, data, slot, text))
        channel.text += text
        return channel

    def _alone(
        self, event: bytes, at: int, data: dict[str, Any], found: tuple[Delta, ...]
    ) -> bytes:
        """An event carrying several texts, each checked after its channel's context."""
        changed = False
        for delta in found:
            holder, key = delta[1]
            text = holder[key]
            # Released at once, to its end: the slot is rewritten if it redacts.
            self._release(self._hold(event, data, delta), final=True)
            changed = changed or holder[key] != text
        if not changed:
            return event + b"\n\n"
        return event[: at + 6] + orjson.dumps(data) + b"\n\n"

    def _release_all(self) -> bytes:
        if not self._channels:
            return b""
        return b"".join(self._release(channel, final=True) for channel in self._channels.values())

    def _release(self, channel: _Channel, *, final: bool) -> bytes:
        if not channel.held or (not final and len(channel.text) < WINDOW + STEP):
            return b""
        offset = len(channel.context)
        findings = []
        whole = channel.context + channel.text
        scanner = self.guard.scanner
        if channel.json:
            found = json_findings(scanner, whole, offset, channel.state)
        else:
            found = scanner.scan(whole)
        for finding in found:
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
        if channel.json:
            channel.state = string_state(channel.text, 0, cut, channel.state)
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
