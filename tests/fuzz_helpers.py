"""What the hypothesis fuzz tests share: how many examples, and the errors
that tell a relayed upstream failure from the gateway's own catch-all."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Examples per test: a short run by default; ``make reliability`` runs more.
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Upstream failures are the provider's answer relayed, or one the gateway
# could not use; the consumer's catch-all (`gateway_error`) is neither.
UPSTREAM_STATUSES = {502, 503, 504}
CATCH_ALL = "the gateway could not complete the request"
