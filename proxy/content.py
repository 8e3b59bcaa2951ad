"""Message content in the request log, for teams that opt in (``Team.store_content``)
and keys that choose for themselves (``VirtualKey.store_content``, resolved into
the snapshot's ``KeyEntry.store_content``).

Off by default: a request whose key does not keep content carries no capture
and pays nothing here. For one that does, the request's text fields (after
the request guardrails) and the text of the answer the client received are
kept, redacted by the built-in secret and personal-data detectors
(``governance.guardrails``), and ride to the database in the request's own
usage record (``RequestRecord.content``): no query, no Redis round trip of
their own.

A stream's text is taken from the events as they are relayed (nothing is
held back from the client) and only up to a cap: ``GATEWAY_CONTENT_MAX_BYTES``
of UTF-8 for the messages and as many for the answer; past it the record
says ``truncated``. Text is redacted before it is cut, so that a secret
straddling the cut is still found whole; the answer is collected a little
beyond the cap (:data:`MARGIN`) for that reason. The answer's text is its
text parts; tool calls' arguments are not kept.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import orjson

from governance.guardrails import CATEGORIES, REDACT, Rule, Scanner, redact
from proxy.guarding import Shape, request_texts, rewrite_strings
from proxy.translation import RelayWrapper

if TYPE_CHECKING:
    from proxy.translation import StreamRelay

# Characters collected past the cap, so that a match across it is redacted whole.
MARGIN = 1024


@functools.cache
def scanner() -> Scanner:
    """Every built-in secret and personal-data detector, redacting."""
    names = (*CATEGORIES["secrets"], *CATEGORIES["personal_data"])
    return Scanner({name: Rule(REDACT) for name in names})


def redacted(text: str) -> str:
    findings = scanner().scan(text)
    return redact(text, findings) if findings else text


def _cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` bytes of UTF-8."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def capped_strings(value: Any, limit: int) -> tuple[Any, bool]:
    """``value`` with its strings cut so that together they hold at most ``limit``
    bytes (in order; later strings become empty), and whether anything was cut."""
    left = limit
    cut = False

    def visit(text: str) -> str:
        nonlocal left, cut
        size = len(text.encode())
        if size <= left:
            left -= size
            return text
        cut = True
        kept = _cut(text, left)
        left = 0
        return kept

    return rewrite_strings(value, visit), cut


class ContentCapture:
    """One request's content, from its payload and the answer sent to the client."""

    def __init__(self, shape: Shape | None, limit: int) -> None:
        self.shape = shape
        self.limit = limit
        self.request: dict[str, Any] = {}
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def take_request(self, payload: dict[str, Any]) -> None:
        """The request's text fields (kept by reference; redacted in :meth:`record`)."""
        self.request = request_texts(payload)

    def add(self, text: str) -> bool:
        """Answer text; False once the cap (and its margin) is reached."""
        room = self.limit + MARGIN - self.size
        if room <= 0:
            self.truncated = True
            return False
        if len(text) > room:
            text = text[:room]
            self.truncated = True
        self.parts.append(text)
        self.size += len(text)
        return not self.truncated

    def answer_body(self, body: bytes) -> None:
        """The whole answer as the client received it."""
        self.parts, self.size, self.truncated = [], 0, False
        if self.shape is None:
            return
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        for (holder, key), arguments in self.shape.parts(data):
            if not arguments and not self.add(holder[key]):
                break

    def stream(self, relay: StreamRelay) -> StreamRelay:
        """``relay``, its answer text read as it passes (a new attempt starts afresh)."""
        self.parts, self.size, self.truncated = [], 0, False
        if self.shape is None:
            return relay
        return CapturedStream(relay, self)

    def record(self) -> dict[str, Any]:
        """What the request log keeps: redacted, then cut to the cap."""
        request, request_cut = capped_strings(rewrite_strings(self.request, redacted), self.limit)
        answer = None
        answer_cut = self.truncated
        if self.parts:
            text = redacted("".join(self.parts))
            answer = _cut(text, self.limit)
            answer_cut = answer_cut or len(answer) < len(text)
        return {
            "request": request,
            "response": answer,
            "truncated": bool(request_cut or answer_cut),
        }


class CapturedStream(RelayWrapper):
    """A client stream whose content deltas' text is copied, up to the cap.

    Reads what the inner relay forwards, after it: the bytes are returned
    unchanged and at once. Past the cap no event is parsed any more.
    """

    def __init__(self, inner: StreamRelay, capture: ContentCapture) -> None:
        super().__init__(inner)
        self.capture = capture
        self._pending = b""
        self._full = False

    def feed(self, chunk: bytes) -> bytes:
        out = self.inner.feed(chunk)
        if out and not self._full:
            self._read(out)
        return out

    def flush(self) -> bytes:
        out = self.inner.flush()
        if not self._full:
            self._read(out + b"\n\n" if self._pending else out)
        return out

    def _read(self, data: bytes) -> None:
        data = self._pending + data if self._pending else data
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return
        complete, self._pending = data[:end], data[end + 2 :]
        shape = self.capture.shape
        assert shape is not None
        for event in complete.split(b"\n\n"):
            at = event.find(b"data: {")
            if at < 0:
                continue
            try:
                payload = orjson.loads(event[at + 6 :])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(payload, dict):
                continue
            for _, (holder, key), arguments in shape.deltas(payload):
                if not arguments and not self.capture.add(holder[key]):
                    self._full = True
                    self._pending = b""
                    return
