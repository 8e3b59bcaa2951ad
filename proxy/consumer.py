"""The base of every inference endpoint: a lean Channels HTTP consumer.

Channels' own ``AsyncHttpConsumer`` joins a channel layer and closes database
connections on every message, and cannot notice a client that goes away
while the response is being produced. This base reads the body with a size
limit, then runs ``handle`` while watching for the client's disconnect, which
cancels the handler (and so the upstream request) at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any

from channels.generic.http import AsyncHttpConsumer

from gateway_project import backend_calls
from gateway_project.fast_settings import settings
from governance.ledger import ledger
from proxy import tracing
from proxy.access_log import access_log
from proxy.auth_failures import unauthenticated_records
from proxy.errors import GatewayError
from proxy.metrics import metrics

logger = logging.getLogger(__name__)

REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
JSON = b"application/json"


class ClientDisconnected(Exception):
    """The client went away before the request body arrived."""


class InferenceConsumer(AsyncHttpConsumer):
    """Reads the body, runs :meth:`handle`, renders :class:`GatewayError`."""

    methods: tuple[str, ...] = ("POST",)
    # Inference requests go into the usage ledger; listings do not.
    recorded = True
    # The endpoint's name in metrics.
    endpoint = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.base_send = send
        self.response_started = False
        self.response_complete = False
        self.started = time.time()
        started = time.perf_counter()
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        # The ledger's key is always the gateway's own id (a client could
        # repeat one of its ids); the client's id is kept and echoed.
        self.request_id = os.urandom(16).hex()
        incoming_id = self.headers.get(b"x-request-id")
        self.client_request_id = (
            incoming_id.decode() if incoming_id and REQUEST_ID_RE.match(incoming_id) else ""
        )
        self.entry: dict[str, Any] = {}
        # Set once the request's key (or the anonymous default) is known.
        self.caller_known = False
        self.status = 0
        self.error_code = ""
        # Set by the flow once known: the caller's team (a metrics label) and
        # the time spent waiting for the provider.
        self.team = ""
        self.upstream_seconds: float | None = None
        metrics.add("gateway_active_requests", 1)
        origin = backend_calls.ORIGIN.set(backend_calls.REQUEST)
        self.span = (
            tracing.start_request(self.endpoint, scope, self.headers)
            if tracing.enabled and self.recorded
            else None
        )
        try:
            await self._serve(receive)
        finally:
            metrics.add("gateway_active_requests", -1)
            backend_calls.ORIGIN.reset(origin)
            if self.recorded:
                entry = self.ledger_entry()
                if self.caller_known or unauthenticated_records.take():
                    ledger.record(entry)
                else:
                    metrics.count("gateway_unrecorded_refusals", (str(entry["status"]),))
                overhead = None
                if self.upstream_seconds is not None:
                    overhead = time.perf_counter() - started - self.upstream_seconds
                metrics.request_finished(self.endpoint, entry, self.team, overhead)
                if settings.GATEWAY_ENABLE_LOGGING:
                    access_log.write(entry, endpoint=self.endpoint, team=self.team)
                if self.span is not None:
                    tracing.end_request(self.span, entry, self.team)

    async def _serve(self, receive: Any) -> None:
        scope = self.scope
        try:
            if scope["method"] not in self.methods:
                raise GatewayError(
                    405,
                    f"{scope['method']} is not allowed on {scope['path']}",
                    code="method_not_allowed",
                    headers=[(b"allow", ", ".join(self.methods).encode())],
                )
            body = await self._read_body(receive)
        except ClientDisconnected:
            return
        except GatewayError as error:
            await self.send_error(error)
            return
        await self._run_watching_disconnect(body, receive)

    async def _read_body(self, receive: Any) -> bytes:
        limit = settings.GATEWAY_MAX_BODY_BYTES
        declared = self.headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise self._too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            # A body trickling in (slowloris) may not hold the request open.
            async with asyncio.timeout(settings.GATEWAY_BODY_TIMEOUT_SECONDS):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientDisconnected
                    chunk = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > limit:
                            raise self._too_large(limit)
                        chunks.append(chunk)
                    if not message.get("more_body"):
                        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except TimeoutError:
            raise GatewayError(
                408,
                "The request body did not arrive in time "
                f"({settings.GATEWAY_BODY_TIMEOUT_SECONDS:g} s).",
                code="request_timeout",
                headers=[(b"connection", b"close")],
            ) from None

    @staticmethod
    def _too_large(limit: int) -> GatewayError:
        return GatewayError(
            413, f"the request body is larger than {limit} bytes", code="request_too_large"
        )

    async def _run_watching_disconnect(self, body: bytes, receive: Any) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        disconnected = False

        async def watch() -> None:
            nonlocal disconnected
            message = await receive()
            # After the last byte the server reports a disconnect too; only an
            # early one means the client left.
            if message["type"] == "http.disconnect" and not self.response_complete:
                disconnected = True
                self.entry["client_disconnected"] = True
                handler.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.handle(body)
        except GatewayError as error:
            await self.send_error(error)
        except asyncio.CancelledError:
            if not disconnected:
                raise
            # The client left: the handler's own cleanup (finally blocks) ran.
            handler.uncancel()
        except Exception:
            logger.exception("request %s failed", self.request_id)
            await self.send_error(
                GatewayError(
                    502, "the gateway could not complete the request", code="gateway_error"
                )
            )
        finally:
            watcher.cancel()

    # --- responses ---------------------------------------------------------------

    def ledger_entry(self) -> dict[str, Any]:
        """The request's usage record (see ``governance.models.RequestRecord``)."""
        peer = self.scope.get("client")
        agent = self.headers.get(b"user-agent", b"")
        return {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "time": self.started,
            "status": self.status or 499,  # 499: the client left before any answer
            "error_code": self.error_code,
            "latency_ms": int((time.time() - self.started) * 1000),
            "client_ip": peer[0] if peer else None,
            "user_agent": agent[:200].decode("utf-8", "replace"),
            **self.entry,
        }

    def response_headers(self, content_type: bytes = JSON) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", content_type),
            (b"x-request-id", (self.client_request_id or self.request_id).encode()),
            (b"x-gateway-request-id", self.request_id.encode()),
        ]

    async def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.response_started = True
        await self.base_send({"type": "http.response.start", "status": status, "headers": headers})

    async def send_chunk(self, body: bytes, *, more: bool = True) -> None:
        if not more:
            self.response_complete = True
        await self.base_send({"type": "http.response.body", "body": body, "more_body": more})

    async def send_json(
        self, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = self.response_headers()
        headers.append((b"content-length", str(len(body)).encode()))
        if extra:
            headers.extend(extra)
        await self.start_response(status, headers)
        await self.send_chunk(body, more=False)

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def stream_error(self, error: GatewayError) -> bytes:
        """An error event ending a stream that has already started."""
        return b"data: " + self.error_body(error) + b"\n\n"

    async def send_error(self, error: GatewayError) -> None:
        self.error_code = error.code
        if self.response_started:
            # Too late for a status: end the stream with an error event.
            await self.send_chunk(self.stream_error(error), more=False)
            return
        await self.send_json(error.status, self.error_body(error), error.headers)
