"""OpenTelemetry: a gateway configured by the standard OTEL_* variables
exports a server span per request and a client span per upstream attempt,
with GenAI attributes and parent links, into a collector (here one in the
test process, speaking OTLP over HTTP); the attempt's context goes upstream."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proxy import tracing
from tests.conftest import gateway_env
from tests.processes import GatewayProcess, free_port

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = {
                        a.key: a.value.string_value for a in resource.resource.attributes
                    }.get("service.name")
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            collector.spans.append((service, span))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 15.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.spans) < count:
            time.sleep(0.05)
        return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()


def attributes(span) -> dict:
    values = {}
    for item in span.attributes:
        value = item.value
        values[item.key] = (
            value.string_value
            if value.HasField("string_value")
            else value.int_value
            if value.HasField("int_value")
            else value.bool_value
        )
    return values


@pytest.fixture
def traced(demo):
    collector = Collector()
    server = GatewayProcess(
        gateway_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
            OTEL_SERVICE_NAME="gateway-under-test",
            OTEL_BSP_SCHEDULE_DELAY="50",
        )
    )
    try:
        server.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        yield server, collector
    finally:
        server.close()
        collector.close()


def test_a_request_and_its_attempt_are_exported_with_genai_attributes(demo, traced):
    server, collector = traced
    answer = server.client.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={
            "authorization": f"Bearer {demo.key}",
            "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
        },
    )
    assert answer.status_code == 200
    spans = collector.wait_for(2)
    assert len(spans) == 2
    by_kind = {span.kind: (service, span) for service, span in spans}
    service, request = by_kind[2]  # SPAN_KIND_SERVER
    _, attempt = by_kind[3]  # SPAN_KIND_CLIENT
    assert service == "gateway-under-test"

    assert request.name == "chat gpt-4o-mini"
    assert request.trace_id.hex() == CLIENT_TRACE
    assert request.parent_span_id.hex() == CLIENT_SPAN
    values = attributes(request)
    assert values["gen_ai.operation.name"] == "chat"
    assert values["gen_ai.request.model"] == "gpt-4o-mini"
    assert values["gen_ai.response.model"] == "mock-gpt"
    assert values["gen_ai.usage.output_tokens"] == 16
    assert values["http.response.status_code"] == 200
    assert values["gateway.team"] == "platform"

    assert attempt.name == "chat mock-gpt"
    assert attempt.trace_id == request.trace_id
    assert attempt.parent_span_id == request.span_id
    values = attributes(attempt)
    assert values["gen_ai.system"] == "openai"
    assert values["gen_ai.usage.input_tokens"] > 0

    # The provider saw the attempt's context.
    [received] = demo.mock.requests()
    assert received["headers"]["traceparent"] == (
        f"00-{CLIENT_TRACE}-{attempt.span_id.hex()}-01"
    )
    for _, span in spans:
        assert demo.key not in str(span)


def test_a_retried_request_has_one_failed_and_one_good_attempt(demo, traced):
    server, collector = traced
    demo.mock.add_rule(status=503, times=1)
    answer = server.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )
    assert answer.status_code == 200
    spans = [span for _, span in collector.wait_for(3)]
    attempts = [span for span in spans if span.kind == 3]
    [request] = [span for span in spans if span.kind == 2]
    assert len(attempts) == 2
    failed, good = sorted(attempts, key=lambda span: span.start_time_unix_nano)
    assert attributes(failed)["error.type"] == "upstream_error"
    assert failed.status.code == 2  # STATUS_CODE_ERROR
    assert good.status.code != 2
    assert {failed.parent_span_id, good.parent_span_id} == {request.span_id}
    assert attributes(request)["gateway.retries"] == 1


def test_tracing_is_off_unless_the_environment_asks():
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.enabled  # the test process traces nothing


def test_the_default_gateway_sends_no_traceparent(demo):
    demo.openai().chat.completions.create(**CHAT)
    [received] = demo.mock.requests()
    assert "traceparent" not in received["headers"]
