"""The response cache's TTL is set like every other policy field: REST API,
console and configuration file, each change audited once."""

from __future__ import annotations

import pytest
from django.urls import reverse

from keys.declarative import ConfigError, apply_config, export_config
from keys.models import Team
from tests.api_fixtures import ApiWorld, error_of
from tests.audit_fixtures import new_events
from tests.console_helpers import record

pytestmark = pytest.mark.django_db


def test_the_api_sets_a_teams_cache_ttl_with_one_audit_event():
    world = ApiWorld()
    client = world.client("admin")
    url = f"/api/v1/teams/{world.team.pk}/"
    assert client.get(url).json()["cache_ttl_seconds"] is None
    with new_events() as events:
        response = client.patch(url, {"cache_ttl_seconds": 600}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["cache_ttl_seconds"] == 600
    assert [
        (e.action, e.before["cache_ttl_seconds"], e.after["cache_ttl_seconds"]) for e in events
    ] == [("update", None, 600)]


def test_the_api_lets_a_customers_teams_share_cached_answers():
    world = ApiWorld()
    client = world.client("admin")
    url = f"/api/v1/customers/{world.customer.pk}/"
    with new_events() as events:
        response = client.patch(url, {"cache_shared_across_teams": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["cache_shared_across_teams"] is True
    assert [
        (e.before["cache_shared_across_teams"], e.after["cache_shared_across_teams"])
        for e in events
    ] == [(False, True)]


@pytest.mark.parametrize("value", [-1, 31 * 24 * 3600])
def test_the_api_refuses_a_ttl_out_of_range(value):
    world = ApiWorld()
    client = world.client("admin")
    with new_events() as events:
        response = client.patch(
            f"/api/v1/virtual-keys/{world.key.pk}/", {"cache_ttl_seconds": value}, format="json"
        )
    assert response.status_code == 400
    assert "cache_ttl_seconds" in error_of(response)["fields"]
    assert events == []


def test_the_console_sets_a_teams_cache_ttl(console, who):
    url = reverse("keys:teams_edit", args=[console.team.pk])
    data = {"customer": console.customer.pk, "allowed_models": "", "cache_ttl_seconds": "300"}
    with new_events() as events:
        who.admin.post(url, data)
    console.team.refresh_from_db()
    assert console.team.cache_ttl_seconds == 300
    assert [e.action for e in events] == ["update"]
    assert "cache_ttl_seconds" in who.admin.get(url).content.decode()


CONFIG = {
    "version": 1,
    "customers": [
        {
            "name": "acme",
            "cache_ttl_seconds": 0,
            "cache_shared_across_teams": True,
            "teams": [{"name": "search", "cache_ttl_seconds": 3600}],
        }
    ],
}


def test_the_configuration_file_declares_and_exports_cache_ttls():
    apply_config(CONFIG)
    team = Team.objects.get(name="search")
    assert (team.cache_ttl_seconds, team.customer.cache_ttl_seconds) == (3600, 0)
    assert team.customer.cache_shared_across_teams
    exported = export_config()["customers"][0]
    assert exported["cache_ttl_seconds"] == 0
    assert exported["cache_shared_across_teams"] is True
    assert exported["teams"][0]["cache_ttl_seconds"] == 3600
    assert apply_config(CONFIG).changed == []


def test_the_configuration_file_refuses_a_ttl_that_is_not_a_number():
    document = {"version": 1, "customers": [{"name": "acme", "cache_ttl_seconds": "1h"}]}
    with pytest.raises(ConfigError, match="cache_ttl_seconds"):
        apply_config(document)


def test_the_request_log_marks_an_answer_from_the_cache(console, who):
    record(console.key, request_id="req-cached-1", cache_hit=True, input_tokens=0)
    hit = who.admin.get(reverse("governance:request_detail", args=["req-cached-1"]))
    other = who.admin.get(reverse("governance:request_detail", args=["req-search-1"]))
    assert "hit (no provider call)" in hit.content.decode()
    assert "hit (no provider call)" not in other.content.decode()
