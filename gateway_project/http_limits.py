"""uvicorn's HTTP protocol (httptools) with limits on slow and oversized requests.

uvicorn bounds only the pause between two requests on a kept-alive
connection. A client that connects and sends nothing, sends its headers a
byte at a time, or sends endless headers would hold a connection (and
memory) for as long as it likes: the slowloris attack. Here:

- the request line and headers must arrive within
  ``GATEWAY_HEADER_TIMEOUT_SECONDS`` of the connection's opening (or of the
  request's first byte on a kept-alive connection), else 408 and the
  connection is closed;
- they may not exceed ``GATEWAY_MAX_HEADER_BYTES``, else 431 and closed;
- the body must arrive within ``GATEWAY_BODY_TIMEOUT_SECONDS`` of the
  headers. The inference endpoints answer 408 in the client's own envelope
  themselves (``proxy.consumer``); this protocol is the backstop for every
  other path, a few seconds later: the application is told the client left
  and the connection is closed.

Nothing here costs a request that behaves: one timer per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway_project.fast_settings import settings

# The application's own 408 comes first; the backstop waits this much longer.
BODY_BACKSTOP_SECONDS = 5.0


class HeadersTooLarge(Exception):
    pass


def _response(status: bytes, code: str, message: str) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    )
    return b"".join(
        [
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: application/json\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with header and body deadlines and a header size limit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._too_large = False
        self._in_headers = False

    # --- deadlines ---------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.transport.write(
            _response(
                b"408 Request Timeout",
                "request_timeout",
                "The request's headers did not arrive in time.",
            )
        )
        self.transport.close()

    def _body_late(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.close()

    # --- the protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_headers = True
        self._arm(settings.GATEWAY_HEADER_TIMEOUT_SECONDS, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if not self._in_headers:  # a kept-alive connection's next request
            self._in_headers = True
            self._arm(settings.GATEWAY_HEADER_TIMEOUT_SECONDS, self._headers_late)

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > settings.GATEWAY_MAX_HEADER_BYTES:
            self._too_large = True
            raise HeadersTooLarge

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            # (A WebSocket upgrade hands the connection over: no deadline.)
            self._arm(
                settings.GATEWAY_BODY_TIMEOUT_SECONDS + BODY_BACKSTOP_SECONDS, self._body_late
            )

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        self._disarm()
        self.transport.write(
            _response(
                b"431 Request Header Fields Too Large",
                "headers_too_large",
                f"The request's headers exceed {settings.GATEWAY_MAX_HEADER_BYTES} bytes.",
            )
        )
        self.transport.close()
