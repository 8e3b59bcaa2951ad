"""Every console page applies the roles: allowed, 403 for a kind off limits, 404 across teams."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def status(client, name, *args, method="get", **data):
    response = getattr(client, method)(reverse(name, args=args), data)
    return response.status_code


LISTS = [
    "governance:dashboard",
    "governance:request_log",
    "governance:live",
    "keys:customers_list",
    "keys:teams_list",
    "keys:key_list",
    "keys:providers_list",
    "keys:routes_list",
    "governance:budgets_list",
    "governance:limits_list",
    "governance:prices_list",
    "governance:guardrails_list",
    "audit_console:trail",
]
# What a team manager may read: their teams' usage, keys, budgets, limits and the catalogue.
MANAGER_READS = {
    "governance:dashboard",
    "governance:request_log",
    "governance:live",
    "keys:teams_list",
    "keys:key_list",
    "keys:routes_list",
    "governance:budgets_list",
    "governance:limits_list",
    "governance:prices_list",
}


@pytest.mark.parametrize("name", LISTS)
def test_admins_and_viewers_read_every_page(who, name):  # the audit trail too
    assert status(who.admin, name) == 200
    assert status(who.viewer, name) == 200


@pytest.mark.parametrize("name", LISTS)
def test_a_team_manager_reads_their_pages_and_is_refused_the_others(who, name):
    assert status(who.manager, name) == (200 if name in MANAGER_READS else 403)


@pytest.mark.parametrize("name", LISTS)
def test_auditors_and_operators_without_a_role_are_refused(who, name):
    auditor = {"governance:dashboard": 302, "audit_console:trail": 200}.get(name, 403)
    assert status(who.auditor, name) == auditor
    assert status(who.outsider, name) == 403


def test_the_root_sends_a_visitor_to_the_sign_in_page(client):
    response = client.get("/", follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert b"Sign in" in response.content


def test_an_operator_signs_in_with_a_password_and_lands_on_the_dashboard(console, client):
    from tests.console_helpers import PASSWORD, persona

    persona("ops", superuser=True, password=PASSWORD)
    response = client.post(reverse("login"), {"username": "ops", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("governance:dashboard")
    assert b"Dashboard" in response.content


def test_a_team_manager_sees_only_their_teams_rows(console, who):
    keys = who.manager.get(reverse("keys:key_list")).content.decode()
    assert "search-prod" in keys and "ads-prod" not in keys
    log = who.manager.get(reverse("governance:request_log")).content.decode()
    assert "req-search-1" in log and "req-ads-1" not in log
    budgets = who.manager.get(reverse("governance:budgets_list")).content.decode()
    assert "team search" in budgets and "team ads" not in budgets
    dashboard = who.manager.get(reverse("governance:dashboard")).content.decode()
    assert "req-search-1" in dashboard and "req-ads-1" not in dashboard
    assert "team ads" not in dashboard


@pytest.mark.parametrize(
    "name,obj",
    [
        ("keys:teams_edit", "other_team"),
        ("keys:key_detail", "other_key"),
        ("governance:budgets_edit", "other_budget"),
        ("governance:limits_edit", "other_limit"),
    ],
)
def test_another_teams_object_is_not_found_for_a_team_manager(console, who, name, obj):
    assert status(who.manager, name, getattr(console, obj).pk) == 404
    assert status(who.viewer, name, getattr(console, obj).pk) == 200


def test_another_teams_request_is_not_found_for_a_team_manager(console, who):
    name = "governance:request_detail"
    assert status(who.manager, name, console.record.request_id) == 200
    assert status(who.manager, name, console.other_record.request_id) == 404
    assert status(who.admin, name, console.other_record.request_id) == 200


@pytest.mark.parametrize(
    "name,obj",
    [
        ("keys:customers_edit", "customer"),
        ("keys:teams_edit", "team"),
        ("keys:key_detail", "key"),
        ("keys:providers_edit", "provider"),
        ("keys:routes_edit", "route"),
        ("governance:budgets_edit", "budget"),
        ("governance:limits_edit", "limit"),
        ("governance:prices_edit", "price"),
        ("governance:guardrails_edit", "guardrail"),
    ],
)
def test_a_viewer_reads_an_object_but_may_not_change_it(console, who, name, obj):
    pk = getattr(console, obj).pk
    assert status(who.viewer, name, pk) == 200
    assert status(who.viewer, name, pk, method="post") == 403


@pytest.mark.parametrize(
    "name",
    [
        "keys:customers_new",
        "keys:teams_new",
        "keys:key_new",
        "keys:providers_new",
        "keys:routes_new",
        "governance:budgets_new",
        "governance:limits_new",
        "governance:prices_new",
        "governance:guardrails_new",
    ],
)
def test_only_writers_open_the_creation_pages(who, name):
    assert status(who.admin, name) == 200
    assert status(who.viewer, name) == 403
    manager_writes = name in {"keys:key_new", "governance:budgets_new", "governance:limits_new"}
    assert status(who.manager, name) == (200 if manager_writes else 403)


def test_a_provider_key_page_shows_the_last_four_characters_only(console, who):
    from tests.audit_fixtures import PROVIDER_SECRET

    pages = [
        reverse("keys:provider_keys", args=[console.provider.pk]),
        reverse("keys:provider_key_edit", args=[console.provider.pk, console.provider_key.pk]),
    ]
    for url in pages:
        page = who.admin.get(url).content.decode()
        assert "…0001" in page
        assert PROVIDER_SECRET not in page
        assert console.provider_key.encrypted_secret not in page
    assert who.manager.get(pages[0]).status_code == 403


def test_the_dashboard_shows_spend_against_every_visible_budget(console, who):
    page = who.admin.get(reverse("governance:dashboard")).content.decode()
    assert "team search: 1.5 of 5 spent per day" in page
    assert "team ads: 0 of 1 spent per month" in page
    assert 'id="chart-data"' in page
    assert "vendor/chartjs/chart.umd.min.js" in page


def test_the_dashboard_filters_by_model_and_splits_by_team(console, who):
    url = reverse("governance:dashboard")
    page = who.admin.get(url, {"model": "gpt-4o", "group_by": "team"})
    series = page.context["chart"]["series"]
    assert {s["name"] for s in series} == {"search", "ads"}
    assert sum(sum(s["requests"]) for s in series) == 2
    nothing = who.admin.get(url, {"model": "nope"}).context["chart"]["series"]
    assert nothing == []


def test_an_auditor_lands_on_the_audit_trail_and_reads_an_event(console, who):
    from audit.models import AuditEvent

    landing = who.auditor.get(reverse("governance:dashboard"))
    assert landing["Location"] == reverse("audit_console:trail")
    page = who.auditor.get(landing["Location"]).content.decode()
    assert "search-prod" in page
    event = AuditEvent.objects.filter(object_repr__startswith="search-prod").first()
    detail = who.auditor.get(reverse("audit_console:event", args=[event.sequence]))
    assert detail.status_code == 200
    assert '"name": "search-prod"' in detail.context["after"]
    assert "&quot;name&quot;: &quot;search-prod&quot;" in detail.content.decode()
    assert status(who.manager, "audit_console:event", event.sequence) == 403


def test_the_navigation_lists_only_the_pages_a_role_may_open(who):
    def links(client):
        response = client.get(reverse("keys:key_list"))
        return [item["label"] for item in response.context["console_nav"]]

    assert links(who.admin) == [
        "Dashboard",
        "Requests",
        "Live",
        "Customers",
        "Teams",
        "Keys",
        "Providers",
        "Routes",
        "Budgets",
        "Limits",
        "Prices",
        "Guardrails",
        "Audit trail",
        "Settings",
    ]
    assert links(who.manager) == [
        "Dashboard",
        "Requests",
        "Live",
        "Teams",
        "Keys",
        "Routes",
        "Budgets",
        "Limits",
        "Prices",
    ]
    page = who.manager.get(reverse("keys:key_list")).content.decode()
    assert f'href="{reverse("keys:key_list")}" aria-current="page"' in page


def test_the_audit_trail_pages_back_by_sequence(console, who):
    first = who.admin.get(reverse("audit_console:trail"))
    assert first.context["next_url"] is None  # fewer than a page of events
    sequences = [e.sequence for e in first.context["events"]]
    assert sequences == sorted(sequences, reverse=True)
    only_creates = who.admin.get(reverse("audit_console:trail"), {"action": "create"})
    assert {e.action for e in only_creates.context["events"]} == {"create"}
