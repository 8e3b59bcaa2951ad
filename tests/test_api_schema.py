"""The OpenAPI schema: served, valid, documented in a local Swagger UI, and fuzzed.

The schemathesis run drives every operation of the live schema in process
(WSGI) as an admin, with few derandomized examples per operation, and fails
on any server error.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from gateway_project.wsgi import application
from tests.api_fixtures import ApiWorld

pytestmark = pytest.mark.django_db


def test_the_schema_is_served_as_openapi_3_and_lists_every_endpoint(client: Client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for name in (
        "customers",
        "teams",
        "virtual-keys",
        "providers",
        "provider-keys",
        "routes",
        "budgets",
        "rate-limits",
        "prices",
        "role-assignments",
        "api-tokens",
        "request-log",
        "usage",
        "audit-events",
    ):
        assert f"/api/v1/{name}/" in paths
    assert "/api/v1/virtual-keys/{id}/rotate/" in paths
    assert "/api/v1/audit-events/export/" in paths
    assert schema["components"]["securitySchemes"]["ApiToken"]["scheme"] == "bearer"


def test_the_docs_load_swagger_ui_from_the_gateway_not_a_cdn(client: Client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    script = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert script.status_code == 200


# Per operation and generation mode: a bounded, repeatable run (well under a minute).
EXAMPLES = settings(
    max_examples=3,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.explicit, Phase.generate],
)


@pytest.fixture
def connection_kept_between_requests():
    """As Django's test client does: the WSGI handler would close the test's connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_no_generated_request_makes_the_api_fail_with_a_server_error(
    connection_kept_between_requests,
):
    world = ApiWorld()
    _, secret = world.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @EXAMPLES
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case):
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            call()
