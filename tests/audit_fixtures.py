"""Shared pieces of the audit trail tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django import forms
from django.db.models import Max

from audit.models import AuditEvent
from keys import services
from keys.models import Customer, ModelRoute, Provider, ProviderKey, Team, VirtualKey
from tests.conftest import gateway_env
from tests.processes import ROOT


def last_sequence() -> int:
    return AuditEvent.objects.aggregate(last=Max("sequence"))["last"] or 0


@contextmanager
def new_events() -> Iterator[list[AuditEvent]]:
    """The events recorded inside the block, oldest first (filled in on exit)."""
    start = last_sequence()
    events: list[AuditEvent] = []
    yield events
    events.extend(AuditEvent.objects.filter(sequence__gt=start).order_by("sequence"))


@dataclass
class World:
    """One of everything keys.services manages."""

    customer: Customer
    team: Team
    key: VirtualKey
    key_secret: str
    provider: Provider
    provider_key: ProviderKey
    route: ModelRoute


PROVIDER_SECRET = "sk-provider-plaintext-0001"


def build_world() -> World:
    customer = services.customer_create(name="acme", description="ACME")
    team = services.team_create(name="search", customer=customer)
    key, secret = services.virtual_key_create(name="search-prod", team=team)
    provider = services.provider_create(
        name="openai", kind="openai", base_url="https://api.example/v1"
    )
    provider_key = services.provider_key_create(
        provider=provider, name="primary", secret=PROVIDER_SECRET
    )
    route = services.model_route_create(name="gpt-4o", provider=provider, provider_model="gpt-4o")
    return World(customer, team, key, secret, provider, provider_key, route)


def manage(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``manage.py`` in its own process, on this test run's database."""
    return run_python("manage.py", *args, timeout=timeout)


def run_python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **gateway_env(LOG_LEVEL="ERROR")},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def posted_values(form: forms.Form) -> dict[str, Any]:
    """What a browser posts back for ``form`` when nothing is edited."""
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    return data


def form_data(client, url: str, **changes: Any) -> dict[str, Any]:
    """What the admin page at ``url`` posts back when nothing is edited, plus ``changes``."""
    context = client.get(url).context
    data = posted_values(context["adminform"].form)
    for inline in context.get("inline_admin_formsets", []):
        management = inline.formset.management_form
        data.update({management.add_prefix(n): management[n].value() for n in management.fields})
    data.update(changes)
    return data
