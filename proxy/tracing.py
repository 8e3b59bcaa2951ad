"""OpenTelemetry traces of inference requests, configured by the standard
``OTEL_*`` variables and free when off.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` or
``console``) or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), and ``OTEL_SDK_DISABLED`` is not
true. The exporter, its endpoint, headers and protocol details, the sampler
(``OTEL_TRACES_SAMPLER``), the batch processor's delays and the resource
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) are read by the SDK
from the same variables. When off, the hot path tests one boolean.

Each request is a server span (its parent is the client's W3C
``traceparent`` when it sends one); each upstream attempt is a client span
below it, whose context goes upstream in ``traceparent``. Attributes follow
OpenTelemetry's GenAI conventions: ``gen_ai.operation.name``,
``gen_ai.system``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` / ``output_tokens``, plus the gateway's own
(``gateway.*``: team, fallback index, retries, cost). Spans never carry a
key or message content.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

# Set by configure(): whether spans are made at all.
enabled = False
_tracer: Any = None
_propagator: Any = None
_provider: Any = None

# Endpoint names as GenAI operation names.
OPERATIONS = {
    "chat_completions": "chat",
    "messages": "chat",
    "completions": "text_completion",
    "embeddings": "embeddings",
    "responses": "chat",
    "count_tokens": "count_tokens",
}


def wanted(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether the environment asks for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {
        name.strip().lower()
        for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
        if name.strip()
    }
    if exporters:
        return bool(exporters - {"none"})
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure() -> None:
    """Set up the tracer provider and exporter once per process, if wanted."""
    global enabled, _tracer, _propagator, _provider
    if enabled or not wanted():
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    names = [
        name.strip().lower()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip() and name.strip().lower() != "none"
    ]
    exporters: list[SpanExporter] = []
    for name in names or ["otlp"]:
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        else:
            logger.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    if not exporters:
        return
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "ai-gateway"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _tracer = provider.get_tracer("ai-gateway")
    _propagator = TraceContextTextMapPropagator()
    _provider = provider
    enabled = True


def shutdown() -> None:
    """Export what is pending (at process shutdown)."""
    global enabled, _provider
    if _provider is not None:
        enabled = False
        _provider.shutdown()
        _provider = None


def start_request(endpoint: str, scope: dict[str, Any], headers: dict[bytes, bytes]) -> Any:
    """The server span of one inference request (child of the client's trace)."""
    from opentelemetry.trace import SpanKind

    carrier = {}
    for name in (b"traceparent", b"tracestate"):
        if name in headers:
            carrier[name.decode()] = headers[name].decode("latin-1")
    parent = _propagator.extract(carrier) if carrier else None
    operation = OPERATIONS.get(endpoint, endpoint)
    return _tracer.start_span(
        operation,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "gen_ai.operation.name": operation,
            "http.request.method": scope.get("method", ""),
            "url.path": scope.get("path", ""),
        },
    )


def end_request(span: Any, entry: dict[str, Any], team: str) -> None:
    """Name the span by the model and finish it with what the request did."""
    from opentelemetry.trace import Status, StatusCode

    model = entry.get("requested_model") or ""
    operation = span.attributes.get("gen_ai.operation.name", "") if span.attributes else ""
    if model:
        span.update_name(f"{operation} {model}")
    status = entry["status"]
    attributes: dict[str, Any] = {"http.response.status_code": status, "gateway.team": team}
    names = {
        "requested_model": "gen_ai.request.model",
        "served_model": "gen_ai.response.model",
        "provider": "gateway.provider",
        "input_tokens": "gen_ai.usage.input_tokens",
        "output_tokens": "gen_ai.usage.output_tokens",
        "cost_micros": "gateway.cost_micros",
        "retries": "gateway.retries",
        "fallback_index": "gateway.fallback_index",
        "request_id": "gateway.request_id",
        "stream": "gateway.stream",
    }
    for field, attribute in names.items():
        value = entry.get(field)
        if value is not None and value != "":
            attributes[attribute] = value
    if entry.get("error_code"):
        attributes["error.type"] = entry["error_code"]
    span.set_attributes(attributes)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, entry.get("error_code") or None))
    span.end()


def start_attempt(
    parent: Any, operation: str, system: str, model: str, headers: dict[str, str], url: str
) -> Any:
    """A client span for one upstream attempt; its context goes into ``headers``."""
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    context = trace.set_span_in_context(parent)
    span = _tracer.start_span(
        f"{operation} {model}",
        context=context,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": operation,
            "gen_ai.system": system,
            "gen_ai.request.model": model,
            "server.address": _host(url),
        },
    )
    _propagator.inject(headers, context=trace.set_span_in_context(span))
    return span


def end_attempt(span: Any, error: Any = None, usage: Any = None) -> None:
    from opentelemetry.trace import Status, StatusCode

    if usage is not None:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
            }
        )
    if error is not None:
        span.set_attributes({"error.type": error.code, "http.response.status_code": error.status})
        span.set_status(Status(StatusCode.ERROR, error.code))
    span.end()


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]
