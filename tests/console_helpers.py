"""Shared pieces of the console tests: a world with two teams and one persona per role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from governance import services as governance
from governance.models import Budget, GuardrailPolicy, ModelPrice, RateLimit, RequestRecord
from governance.rollups import usage_rollup
from keys import services
from keys.models import Team, VirtualKey
from tests.audit_fixtures import World, build_world

User = get_user_model()
PASSWORD = "a-long-test-password-1"


@dataclass
class ConsoleWorld(World):
    """``build_world``'s objects, a second team ("ads") and what hangs off both teams."""

    other_team: Team = None  # type: ignore[assignment]
    other_key: VirtualKey = None  # type: ignore[assignment]
    budget: Budget = None  # type: ignore[assignment]
    other_budget: Budget = None  # type: ignore[assignment]
    limit: RateLimit = None  # type: ignore[assignment]
    other_limit: RateLimit = None  # type: ignore[assignment]
    price: ModelPrice = None  # type: ignore[assignment]
    guardrail: GuardrailPolicy = None  # type: ignore[assignment]
    record: RequestRecord = None  # type: ignore[assignment]
    other_record: RequestRecord = None  # type: ignore[assignment]


def console_world() -> ConsoleWorld:
    base = build_world()
    world = ConsoleWorld(**base.__dict__)
    world.other_team = services.team_create(name="ads")
    world.other_key, _ = services.virtual_key_create(name="ads-prod", team=world.other_team)
    world.budget = governance.budget_create(owner=world.team, amount_micros=5_000_000, period="1d")
    world.other_budget = governance.budget_create(
        owner=world.other_team, amount_micros=1_000_000, period="1M"
    )
    world.limit = governance.rate_limit_create(owner=world.key, metric="requests", limit=10)
    world.other_limit = governance.rate_limit_create(
        owner=world.other_team, metric="tokens", limit=1000
    )
    world.price, _ = governance.model_price_set(
        provider_kind="openai",
        model="gpt-4o",
        input_micros_per_mtok=2_500_000,
        output_micros_per_mtok=10_000_000,
    )
    world.guardrail = governance.guardrail_policy_create(
        name="search-secrets", owner=world.team, detectors={"secrets": "block"}
    )
    world.record = record(world.key, request_id="req-search-1", cost_micros=1_500_000)
    world.other_record = record(world.other_key, request_id="req-ads-1", status=502)
    usage_rollup()  # the dashboard's charts read rollups, as the schedule keeps them
    return world


def record(key: VirtualKey, **fields: Any) -> RequestRecord:
    values = {
        "time": timezone.now(),
        "key_id": key.pk,
        "team_id": key.team_id,
        "customer_id": key.team.customer_id,
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "provider": "openai",
        "status": 200,
        "input_tokens": 12,
        "output_tokens": 30,
        "latency_ms": 80,
    }
    values.update(fields)
    return RequestRecord.objects.create(**values)


def persona(
    name: str,
    *roles: str,
    teams: tuple[Team, ...] = (),
    superuser: bool = False,
    password: str | None = None,
):
    """An operator holding ``roles`` (team managers: of ``teams``).

    Without ``password`` the account has none (tests sign it in directly:
    hashing a password costs a noticeable fraction of a second).
    """
    if superuser:
        user = User.objects.create_superuser(name, f"{name}@example.com", password)
    else:
        user = User.objects.create_user(name, password=password)
    for role in roles:
        services.role_assignment_create(user=user, role=role)
    for team in teams:
        services.role_assignment_create(user=user, role="team_manager", team=team)
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@dataclass
class Personas:
    admin: Client
    manager: Client
    viewer: Client
    auditor: Client
    outsider: Client


def personas(world: ConsoleWorld) -> Personas:
    """One client per role; the manager manages ``world.team`` ("search") only."""
    return Personas(
        admin=signed_in(persona("root", superuser=True)),
        manager=signed_in(persona("manager", teams=(world.team,))),
        viewer=signed_in(persona("viewer", "viewer")),
        auditor=signed_in(persona("auditor", "auditor")),
        outsider=signed_in(persona("outsider")),
    )
