"""A pytest plugin for ``make reliability``: the suite's existing fault and
bad-input tests become rows of docs/reliability.md.

Tests written for the report add their own rows with measured figures
(``tests.reliability_report.add_row``). The older tests below each prove one
fault class with a request or a few; this plugin adds a row for each when it
has run, saying what its assertions established, or that it failed.

    pytest -p tests.reliability_plugin ...
"""

from __future__ import annotations

import pytest

from tests.reliability_report import add_row

# test (file::name, parameters stripped) → (area, case, what the client saw, what was lost)
KNOWN: dict[str, tuple[str, str, str, str]] = {
    "test_upstream_errors.py::test_a_provider_outage_is_a_502": (
        "Upstream",
        "the provider answers 503 (no fallback)",
        "502 `upstream_error` in the envelope",
        "nothing",
    ),
    "test_upstream_errors.py::test_a_provider_rate_limit_is_a_429_with_retry_after": (
        "Upstream",
        "the provider answers 429 with Retry-After",
        "429 `upstream_rate_limited` with the provider's Retry-After",
        "nothing",
    ),
    "test_upstream_errors.py::test_a_provider_refusing_the_gateways_key_is_not_blamed_on_the_client": (  # noqa: E501
        "Upstream",
        "the provider refuses the gateway's key (401)",
        "502 `upstream_auth_error` (not a 401 for the client's key)",
        "nothing",
    ),
    "test_upstream_errors.py::test_an_unreachable_provider_is_a_502": (
        "Upstream",
        "connection refused",
        "502 `upstream_unreachable`",
        "nothing",
    ),
    "test_upstream_errors.py::test_a_connection_reset_is_a_502": (
        "Upstream",
        "connection reset (RST) by the provider",
        "502",
        "nothing",
    ),
    "test_upstream_errors.py::test_malformed_upstream_json_is_a_502_and_the_gateway_survives": (
        "Upstream",
        "malformed (truncated) JSON answer",
        "502; the next request is served",
        "nothing",
    ),
    "test_fallbacks_and_retries.py::test_a_provider_outage_falls_back_to_the_next_deployment": (
        "Upstream",
        "provider outage with a fallback route",
        "200 from the fallback; one usage record",
        "nothing",
    ),
    "test_fallbacks_and_retries.py::test_a_transient_error_is_retried_on_the_same_deployment": (
        "Upstream",
        "one transient 5xx",
        "200 after a retry (`x-gateway-retries: 1`)",
        "nothing",
    ),
    "test_fallbacks_and_retries.py::test_a_rate_limited_key_is_cooled_down_and_another_key_takes_over": (  # noqa: E501
        "Upstream",
        "one provider key rate limited (429)",
        "200 through the provider's other key; the limited key cools down",
        "nothing",
    ),
    "test_fallbacks_and_retries.py::test_retry_after_is_honoured_when_no_other_key_is_left": (
        "Upstream",
        "429 with Retry-After and no other key",
        "200 after waiting the Retry-After",
        "nothing",
    ),
    "test_fallbacks_and_retries.py::test_when_every_deployment_fails_the_client_gets_the_last_error": (  # noqa: E501
        "Upstream",
        "every deployment of the route fails",
        "the last upstream error, in the envelope",
        "nothing",
    ),
    "test_fallbacks_and_retries.py::test_nothing_is_retried_once_the_stream_has_started": (
        "Upstream",
        "a failure after the stream started",
        "an error event ending the stream; no second attempt",
        "nothing",
    ),
    "test_circuit_breaker.py::test_it_opens_probes_and_closes": (
        "Upstream",
        "a provider failing repeatedly (circuit breaker)",
        "the circuit opens, one probe, then closes when the provider recovers",
        "nothing",
    ),
    "test_circuit_breaker.py::test_an_open_breaker_sends_requests_to_the_fallback": (
        "Upstream",
        "an open circuit with a fallback",
        "200 from the fallback without trying the failing provider",
        "nothing",
    ),
    "test_timeouts_and_keepalive.py::test_a_slow_first_byte_gets_keep_alive_comments": (
        "Upstream",
        "slow first byte of a stream",
        "SSE keep-alive comments until the first token",
        "nothing",
    ),
    "test_timeouts_and_keepalive.py::test_a_providers_first_byte_timeout_ends_a_slow_attempt": (
        "Upstream",
        "first byte later than the provider's timeout",
        "504 after the configured first-byte timeout",
        "nothing",
    ),
    "test_cancellation.py::test_a_client_leaving_mid_stream_cancels_the_upstream_within_100_ms": (
        "Clients",
        "a client leaving mid-stream",
        "(gone) the upstream request is cancelled within 100 ms",
        "nothing: the partial usage is recorded",
    ),
    "test_bad_input.py::test_it_refuses_a_body_that_is_not_a_json_object": (
        "Bad input",
        "bodies that are not a JSON object",
        "400 `invalid_json` / `invalid_request`",
        "nothing",
    ),
    "test_bad_input.py::test_it_names_the_wrong_parameter": (
        "Bad input",
        "parameters of the wrong type",
        "400 naming the parameter",
        "nothing",
    ),
    "test_bad_input.py::test_a_body_over_the_limit_is_a_413": (
        "Bad input",
        "a body over GATEWAY_MAX_BODY_BYTES",
        "413 `request_too_large`",
        "nothing",
    ),
    "test_bad_input.py::test_a_body_over_the_limit_without_a_declared_length_is_a_413": (
        "Bad input",
        "a chunked body over the limit",
        "413, reading stops at the limit",
        "nothing",
    ),
    "test_bad_input.py::test_it_refuses_an_array_element_of_the_wrong_type": (
        "Bad input",
        "array elements of the wrong type (`prompt: [null]`, negative token ids, tools that "
        "are not objects)",
        "400 naming the element; the provider is not called",
        "nothing",
    ),
    "test_bad_input.py::test_it_refuses_a_content_block_of_the_wrong_shape_in_anthropics_envelope": (  # noqa: E501
        "Bad input",
        "Anthropic content blocks of the wrong shape (text not a string, image source not an "
        "object, a block that is not an object)",
        "400 `invalid_request_error` in Anthropic's envelope; the provider is not called",
        "nothing",
    ),
    "test_api_schema.py::test_no_generated_request_makes_the_api_fail_with_a_server_error": (
        "Bad input",
        "REST API fuzzed from its OpenAPI schema (schemathesis, every operation)",
        "no 5xx; errors in the API's envelope",
        "nothing",
    ),
    "test_authentication.py::test_it_refuses_garbage_in_the_authorization_header": (
        "Security",
        "garbage in the Authorization header",
        "401 in the envelope",
        "nothing",
    ),
    "test_usage_ledger.py::test_sigterm_mid_load_loses_no_record": (
        "Crash",
        "gateway stopped with SIGTERM under load",
        "answers to every request it accepted",
        "nothing: every answered request has its usage record",
    ),
    "test_drain.py::test_sigterm_lets_twenty_streams_finish_and_loses_no_record": (
        "Crash",
        "SIGTERM with twenty streams in flight (drain)",
        "every stream finished",
        "nothing",
    ),
    "test_usage_ledger.py::test_a_worker_dying_mid_batch_neither_loses_nor_duplicates": (
        "Crash",
        "Celery worker killed mid-batch",
        "(not involved)",
        "nothing, and no duplicate: the batch is taken up again",
    ),
}


def _known(report: pytest.TestReport) -> tuple[str, str, str, str] | None:
    path, _, name = report.nodeid.partition("::")
    return KNOWN.get(f"{path.rsplit('/', 1)[-1]}::{name.split('[', 1)[0]}")


_reported: set[str] = set()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = _known(report)
    if row is None or (report.when != "call" and not report.failed):
        return
    area, case, saw, lost = row
    if report.failed:
        add_row(area, case, requests=None, client_saw=f"FAILED: not shown: {saw}", lost="?")
        return
    key = report.nodeid.split("[", 1)[0]
    if key not in _reported:  # one row per test, not per parameter
        _reported.add(key)
        add_row(area, case, requests=None, client_saw=saw, lost=lost)
