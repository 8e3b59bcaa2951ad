"""The OpenAPI schema: served, valid, documented in a local Swagger UI, and fuzzed.

The schemathesis run drives every operation of the live schema in process
(WSGI) as an admin, with few derandomized examples per operation, and fails
on any server error.
"""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from audit.models import AuditEvent
from gateway_project.wsgi import application
from keys import services
from keys.models import RoleAssignment
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


def existing_ids(world: ApiWorld) -> dict[str, int]:
    """An object of each kind, so that detail operations also reach real rows."""
    spare_token, _ = services.api_token_create(user=world.spare_user, name="fuzzed")
    objects = {
        "customers": world.customer,
        "teams": world.team,
        "virtual-keys": world.key,
        "providers": world.provider,
        "provider-keys": world.provider_key,
        "routes": world.route,
        "budgets": world.budget,
        "rate-limits": world.limit,
        "guardrail-policies": world.guardrail,
        "prices": world.price,
        "role-assignments": RoleAssignment.objects.get(user__username="vera"),
        "api-tokens": spare_token,  # not the one the run authenticates with
        "request-log": world.record,
        "audit-events": AuditEvent.objects.first(),
    }
    return {path: obj.pk for path, obj in objects.items()}


def test_no_generated_request_makes_the_api_fail_with_a_server_error(
    connection_kept_between_requests,
):
    world = ApiWorld()
    _, secret = world.token("admin")
    headers = {"Authorization": f"Bearer {secret}"}
    ids = existing_ids(world)
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50

    for operation in operations:
        kind = operation.path.split("/")[3]
        fixed = [None, {"id": ids[kind]}] if "{id}" in operation.path else [None]
        for mode, path_parameters in itertools.product(
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE), fixed
        ):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            @EXAMPLES
            @given(case=strategy)
            def call(case):
                case.call_and_validate(headers=headers, checks=[not_a_server_error])

            call()
