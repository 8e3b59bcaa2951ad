"""One error envelope for the whole API: 400, 401, 403, 404, 405 and 409 look the same."""

from __future__ import annotations

import pytest

from tests.api_fixtures import ApiWorld, error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> ApiWorld:
    return ApiWorld()


def test_an_unknown_address_under_the_api_is_a_404_in_the_envelope(world):
    for path in ("/api/v1/nothing-here/", "/api/v2/customers/", "/api/v1/"):
        response = world.client("admin").get(path)
        assert response.status_code == 404, path
        assert error_of(response)["code"] == "not_found"


def test_a_method_the_endpoint_lacks_is_a_405(world):
    response = world.client("admin").delete(f"/api/v1/virtual-keys/{world.key.pk}/")

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_malformed_json_is_a_400(world):
    response = world.client("admin").post(
        "/api/v1/customers/", data="{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


def test_a_body_that_is_not_json_is_a_415(world):
    response = world.client("admin").post(
        "/api/v1/customers/", data="name=x", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_deleting_what_is_still_in_use_is_a_409_and_deletes_nothing(world):
    response = world.client("admin").delete(f"/api/v1/customers/{world.customer.pk}/")

    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert "search" in error["message"]  # the team still under the customer
    world.customer.refresh_from_db()


def test_a_service_refusal_is_a_400_with_its_reason(world):
    response = world.client("admin").post(
        "/api/v1/api-tokens/",
        {"name": "late", "expires_at": "2001-01-01T00:00:00Z"},
        format="json",
    )

    assert response.status_code == 400
    error = error_of(response)
    assert error["message"] == "an API token cannot expire in the past"
    assert error["fields"] == {}


def test_a_model_validation_error_names_its_field(world):
    response = world.client("admin").post(
        "/api/v1/providers/",
        {"name": "azure", "kind": "azure", "base_url": "https://a.example", "options": {"x": "1"}},
        format="json",
    )

    error = error_of(response)
    assert response.status_code == 400
    assert "Unknown option" in error["fields"]["options"][0]


def test_a_duplicate_name_is_a_400_on_the_name(world):
    response = world.client("admin").post("/api/v1/customers/", {"name": "acme"}, format="json")

    assert response.status_code == 400
    assert "name" in error_of(response)["fields"]


def test_an_out_of_range_number_is_a_400_not_a_server_error(world):
    response = world.client("admin").post(
        "/api/v1/budgets/",
        {"team": world.team.pk, "amount_micros": 10**30, "period": "1d"},
        format="json",
    )

    assert response.status_code == 400
    assert "amount_micros" in error_of(response)["fields"]


def test_null_characters_in_json_fields_are_a_400(world):
    response = world.client("admin").post(
        "/api/v1/customers/", {"name": "globex", "metadata": {"a": "b\u0000"}}, format="json"
    )

    assert response.status_code == 400
    assert "metadata" in error_of(response)["fields"]
