"""Every console form that changes something records exactly one audit event.

The walk covers every console URL that accepts a change (``_new``,
``_edit``, ``_delete``, revoke, rotate, provider keys): a console page added
without a case here fails ``test_the_walk_covers_every_console_form``. Each
case posts the form as the signed-in admin and expects one event naming that
operator, with the object's state before and after, and no secret in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.urls import URLPattern, get_resolver, reverse

from governance import services as governance
from keys import services
from tests.audit_fixtures import PROVIDER_SECRET, new_events, posted_values
from tests.console_helpers import ConsoleWorld

pytestmark = pytest.mark.django_db

CONSOLE_NAMESPACES = ("keys", "governance", "audit_console")
CHANGES = re.compile(r"_(new|edit|delete|revoke|rotate)$|^key_detail$")
TYPED_SECRET = "sk-typed-in-console-0099"


@dataclass(frozen=True)
class Case:
    """A console form: its URL arguments, what to post, the event it must write.

    ``setup`` makes the object the case works on (for deletions, one nothing
    depends on); ``fill`` starts from what the page's form shows, as a
    browser would post it.
    """

    action: str
    model: str
    data: Callable[[ConsoleWorld, Any], dict[str, Any]] = lambda world, obj: {}
    args: Callable[[ConsoleWorld, Any], tuple[Any, ...]] = lambda world, obj: ()
    setup: Callable[[ConsoleWorld], Any] = lambda world: None
    fill: bool = False
    changed: tuple[str, ...] = field(default_factory=tuple)


def _pk(world: ConsoleWorld, obj: Any) -> tuple[Any, ...]:
    return (obj.pk,)


CASES: dict[str, Case] = {
    "keys:customers_new": Case("create", "keys.customer", lambda w, o: {"name": "globex"}),
    "keys:customers_edit": Case(
        "update",
        "keys.customer",
        lambda w, o: {"description": "ACME Corp"},
        _pk,
        lambda w: w.customer,
        fill=True,
        changed=("description",),
    ),
    "keys:customers_delete": Case(
        "delete", "keys.customer", args=_pk, setup=lambda w: services.customer_create(name="gone")
    ),
    "keys:teams_new": Case(
        "create", "keys.team", lambda w, o: {"name": "growth", "customer": w.customer.pk}
    ),
    "keys:teams_edit": Case(
        "update",
        "keys.team",
        lambda w, o: {"description": "the search team"},
        _pk,
        lambda w: w.team,
        fill=True,
        changed=("description",),
    ),
    "keys:teams_delete": Case(
        "delete", "keys.team", args=_pk, setup=lambda w: services.team_create(name="gone")
    ),
    "keys:key_new": Case(
        "create", "keys.virtualkey", lambda w, o: {"name": "search-ci", "team": w.team.pk}
    ),
    "keys:key_detail": Case(
        "update",
        "keys.virtualkey",
        lambda w, o: {"allowed_ips": "10.0.0.0/8"},
        _pk,
        lambda w: w.key,
        fill=True,
        changed=("allowed_ips",),
    ),
    "keys:key_revoke": Case(
        "revoke", "keys.virtualkey", args=_pk, setup=lambda w: w.key, changed=("is_active",)
    ),
    "keys:key_rotate": Case(
        "rotate",
        "keys.virtualkey",
        lambda w, o: {"grace_hours": "1"},
        _pk,
        lambda w: w.key,
        changed=("prefix",),
    ),
    "keys:providers_new": Case(
        "create",
        "keys.provider",
        lambda w, o: {"name": "local", "kind": "openai", "base_url": "https://llm.example/v1"},
    ),
    "keys:providers_edit": Case(
        "update",
        "keys.provider",
        lambda w, o: {"base_url": "https://b.example/v1"},
        _pk,
        lambda w: w.provider,
        fill=True,
        changed=("base_url",),
    ),
    "keys:providers_delete": Case(
        "delete",
        "keys.provider",
        args=_pk,
        setup=lambda w: services.provider_create(
            name="gone", kind="openai", base_url="https://gone.example/v1"
        ),
    ),
    "keys:provider_key_new": Case(
        "create",
        "keys.providerkey",
        lambda w, o: {"name": "secondary", "secret": TYPED_SECRET, "weight": "2"},
        lambda w, o: (w.provider.pk,),
    ),
    "keys:provider_key_edit": Case(
        "update",
        "keys.providerkey",
        lambda w, o: {"weight": "7"},
        lambda w, o: (w.provider.pk, w.provider_key.pk),
        lambda w: w.provider_key,
        fill=True,
        changed=("weight",),
    ),
    "keys:provider_key_delete": Case(
        "delete",
        "keys.providerkey",
        args=lambda w, o: (w.provider.pk, o.pk),
        setup=lambda w: services.provider_key_create(
            provider=w.provider, name="spare", secret=TYPED_SECRET
        ),
    ),
    "keys:routes_new": Case(
        "create",
        "keys.modelroute",
        lambda w, o: {"name": "smart", "provider": w.provider.pk, "provider_model": "gpt-4o"},
    ),
    "keys:routes_edit": Case(
        "update",
        "keys.modelroute",
        lambda w, o: {"provider_model": "gpt-4o-2024-08-06"},
        _pk,
        lambda w: w.route,
        fill=True,
        changed=("provider_model",),
    ),
    "keys:routes_delete": Case(
        "delete",
        "keys.modelroute",
        args=_pk,
        setup=lambda w: services.model_route_create(
            name="gone", provider=w.provider, provider_model="gpt-4o"
        ),
    ),
    "governance:budgets_new": Case(
        "create",
        "governance.budget",
        lambda w, o: {"owner": f"team:{w.team.pk}", "amount_micros": "3", "period": "1w"},
    ),
    "governance:budgets_edit": Case(
        "update",
        "governance.budget",
        lambda w, o: {"amount_micros": "9.5"},
        _pk,
        lambda w: w.budget,
        fill=True,
        changed=("amount_micros",),
    ),
    "governance:budgets_delete": Case(
        "delete", "governance.budget", args=_pk, setup=lambda w: w.budget
    ),
    "governance:limits_new": Case(
        "create",
        "governance.ratelimit",
        lambda w, o: {
            "owner": f"team:{w.team.pk}",
            "metric": "tokens",
            "limit": "500",
            "window_seconds": "60",
        },
    ),
    "governance:limits_edit": Case(
        "update",
        "governance.ratelimit",
        lambda w, o: {"limit": "20"},
        _pk,
        lambda w: w.limit,
        fill=True,
        changed=("limit",),
    ),
    "governance:limits_delete": Case(
        "delete", "governance.ratelimit", args=_pk, setup=lambda w: w.limit
    ),
    "governance:prices_new": Case(
        "create",
        "governance.modelprice",
        lambda w, o: {
            "provider_kind": "anthropic",
            "model": "claude-haiku-4-5",
            "input_micros_per_mtok": "1",
            "output_micros_per_mtok": "5",
        },
    ),
    "governance:prices_edit": Case(
        "update",
        "governance.modelprice",
        lambda w, o: {"output_micros_per_mtok": "12"},
        _pk,
        lambda w: w.price,
        fill=True,
        changed=("output_micros_per_mtok",),
    ),
    "governance:prices_delete": Case(
        "delete", "governance.modelprice", args=_pk, setup=lambda w: w.price
    ),
    "governance:guardrails_new": Case(
        "create",
        "governance.guardrailpolicy",
        lambda w, o: {
            "name": "pii",
            "owner": "global",
            "direction": "both",
            "detectors": "email: flag",
        },
    ),
    "governance:guardrails_edit": Case(
        "update",
        "governance.guardrailpolicy",
        lambda w, o: {"max_messages": "30"},
        _pk,
        lambda w: w.guardrail,
        fill=True,
        changed=("max_messages",),
    ),
    "governance:guardrails_delete": Case(
        "delete",
        "governance.guardrailpolicy",
        args=_pk,
        setup=lambda w: governance.guardrail_policy_create(name="gone"),
    ),
}


def console_changes() -> set[str]:
    """The names of the console's URLs that change something."""
    names = set()
    resolver = get_resolver()
    for namespace in CONSOLE_NAMESPACES:
        _, inner = resolver.namespace_dict[namespace]
        for pattern in inner.url_patterns:
            if isinstance(pattern, URLPattern) and pattern.name and CHANGES.search(pattern.name):
                names.add(f"{namespace}:{pattern.name}")
    return names


def shown_form(client, url: str) -> dict[str, Any]:
    """What the console page at ``url`` posts back when nothing is edited."""
    return posted_values(client.get(url).context["form"])


def test_the_walk_covers_every_console_form():
    assert console_changes() == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_console_form_records_one_event_by_its_operator(console, who, name):
    case = CASES[name]
    obj = case.setup(console)
    url = reverse(name, args=case.args(console, obj))
    data = {**(shown_form(who.admin, url) if case.fill else {}), **case.data(console, obj)}

    with new_events() as events:
        response = who.admin.post(url, data)

    # A redirect to the object, or (a new or rotated key) the page showing its secret once.
    form = response.context.get("form") if response.context else None
    assert response.status_code in (200, 302), form.errors if form else response
    assert form is None or not form.errors, form.errors
    assert len(events) == 1, [(e.action, e.object_repr) for e in events]
    [event] = events
    assert (event.action, event.object_type) == (case.action, case.model)
    assert (event.actor_kind, event.actor_name) == ("user", "root")
    if case.action == "create":
        assert event.before is None and event.after
    elif case.action == "delete":
        assert event.before and event.after is None
        assert event.object_id == str(obj.pk)
    else:
        assert event.object_id == str(obj.pk)
        for changed in case.changed:
            assert event.before[changed] != event.after[changed], changed
    recorded = str(event.before) + str(event.after)
    for secret in (TYPED_SECRET, PROVIDER_SECRET, console.key_secret):
        assert secret not in recorded
