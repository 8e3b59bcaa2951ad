"""Shared pieces of the REST API tests: one of everything, operators, and the endpoint table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Model
from django.utils import timezone
from rest_framework.test import APIClient

from governance import services as governance
from governance.models import Budget, GuardrailPolicy, ModelPrice, RateLimit, RequestRecord
from keys import services
from keys.models import (
    ApiToken,
    Customer,
    ModelRoute,
    Provider,
    ProviderKey,
    RoleAssignment,
    Team,
    VirtualKey,
)
from tests.audit_fixtures import build_world

User = get_user_model()
API = "/api/v1"


class ApiWorld:
    """The audit tests' world, a second team with its own key, budget and limit, and operators.

    Each operator is a user with one role, reached through an ``APIClient``
    that sends that user's API token (``client(name)``).
    """

    def __init__(self) -> None:
        world = build_world()
        self.customer, self.team, self.key = world.customer, world.team, world.key
        self.key_secret = world.key_secret
        self.provider, self.provider_key, self.route = (
            world.provider,
            world.provider_key,
            world.route,
        )
        self.other_team = services.team_create(name="ads", customer=self.customer)
        self.other_key, _ = services.virtual_key_create(name="ads-prod", team=self.other_team)
        self.budget = governance.budget_create(owner=self.team, amount_micros=10, period="1d")
        self.other_budget = governance.budget_create(
            owner=self.other_team, amount_micros=10, period="1d"
        )
        self.guardrail = governance.guardrail_policy_create(
            name="no-secrets", detectors={"secrets": "block"}
        )
        self.limit = governance.rate_limit_create(owner=self.key, metric="requests", limit=5)
        self.other_limit = governance.rate_limit_create(
            owner=self.other_key, metric="requests", limit=5
        )
        self.price, _ = governance.model_price_set(
            provider_kind="openai",
            model="gpt-4o",
            input_micros_per_mtok=1,
            output_micros_per_mtok=2,
        )
        now = timezone.now()
        self.record = RequestRecord.objects.create(
            request_id="r-search", time=now, team_id=self.team.pk, key_id=self.key.pk, status=200
        )
        self.other_record = RequestRecord.objects.create(
            request_id="r-ads", time=now, team_id=self.other_team.pk, status=500
        )
        self.users = {
            "admin": User.objects.create_superuser("root"),
            "manager": self._user("tina", teams=(self.team,)),
            "viewer": self._user("vera", "viewer"),
            "auditor": self._user("audrey", "auditor"),
            "nobody": self._user("nobody"),
        }
        self.spare_user = self._user("newbie")
        self.tokens: dict[str, tuple[ApiToken, str]] = {}

    @staticmethod
    def _user(name: str, *roles: str, teams: tuple[Team, ...] = ()) -> Any:
        user = User.objects.create_user(name)
        for role in roles:
            services.role_assignment_create(user=user, role=role)
        for team in teams:
            services.role_assignment_create(user=user, role="team_manager", team=team)
        return user

    def token(self, who: str, *, read_only: bool = False) -> tuple[ApiToken, str]:
        name = f"{who}-ro" if read_only else who
        if name not in self.tokens:
            self.tokens[name] = services.api_token_create(
                user=self.users[who], name=f"{name}-token", read_only=read_only
            )
        return self.tokens[name]

    def client(self, who: str | None, *, read_only: bool = False) -> APIClient:
        """A client acting as operator ``who`` through their token (``None``: anonymous)."""
        client = APIClient()
        if who is not None:
            client.credentials(
                HTTP_AUTHORIZATION=f"Bearer {self.token(who, read_only=read_only)[1]}"
            )
        return client


def error_of(response: Any) -> dict[str, Any]:
    """The envelope's ``error``, after checking the envelope's shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert body["error"]["message"]
    return body["error"]


@dataclass(frozen=True)
class Endpoint:
    """How the generic tests drive one management endpoint."""

    path: str
    model: type[Model]
    existing: Callable[[ApiWorld], Model]
    create: Callable[[ApiWorld], dict[str, Any]]
    invalid: Callable[[ApiWorld], dict[str, Any]]
    invalid_field: str
    update: dict[str, Any] | None = None
    disposable: Callable[[ApiWorld], Model] | None = None
    other_team: Callable[[ApiWorld], Model] | None = None
    shown: tuple[str, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return self.path

    def url(self, obj: Model | None = None) -> str:
        return f"{API}/{self.path}/" if obj is None else f"{API}/{self.path}/{obj.pk}/"


ENDPOINTS = [
    Endpoint(
        path="customers",
        model=Customer,
        existing=lambda w: w.customer,
        create=lambda w: {"name": "globex", "description": "G", "allowed_models": ["gpt-4o*"]},
        invalid=lambda w: {"name": "Not A Slug!"},
        invalid_field="name",
        update={"description": "changed"},
        disposable=lambda w: services.customer_create(name="spare"),
    ),
    Endpoint(
        path="teams",
        model=Team,
        existing=lambda w: w.team,
        create=lambda w: {"name": "ml", "customer": w.customer.pk},
        invalid=lambda w: {"name": "ml", "customer": 999_999},
        invalid_field="customer",
        update={"description": "changed"},
        disposable=lambda w: services.team_create(name="spare-team"),
        other_team=lambda w: w.other_team,
    ),
    Endpoint(
        path="virtual-keys",
        model=VirtualKey,
        existing=lambda w: w.key,
        create=lambda w: {"name": "search-ci", "team": w.team.pk},
        invalid=lambda w: {"name": "search-ci", "team": w.team.pk, "allowed_ips": ["nowhere"]},
        invalid_field="allowed_ips",
        update={"allowed_models": ["gpt-4o"]},
        other_team=lambda w: w.other_key,
    ),
    Endpoint(
        path="providers",
        model=Provider,
        existing=lambda w: w.provider,
        create=lambda w: {
            "name": "anthropic",
            "kind": "anthropic",
            "base_url": "https://api.anthropic.example/v1",
        },
        invalid=lambda w: {
            "name": "azure",
            "kind": "azure",
            "base_url": "https://azure.example",
            "options": {"colour": "blue"},
        },
        invalid_field="options",
        update={"is_active": False},
        disposable=lambda w: services.provider_create(
            name="spare-provider", kind="openai", base_url="https://spare.example/v1"
        ),
    ),
    Endpoint(
        path="provider-keys",
        model=ProviderKey,
        existing=lambda w: w.provider_key,
        create=lambda w: {"provider": w.provider.pk, "name": "backup", "secret": "sk-backup-9999"},
        invalid=lambda w: {"provider": w.provider.pk, "name": "backup"},
        invalid_field="secret",
        update={"weight": 3},
        disposable=lambda w: services.provider_key_create(
            provider=w.provider, name="spare-key", secret="sk-spare-0000"
        ),
    ),
    Endpoint(
        path="routes",
        model=ModelRoute,
        existing=lambda w: w.route,
        create=lambda w: {
            "name": "gpt-4o-mini",
            "provider": w.provider.pk,
            "provider_model": "gpt-4o-mini",
            "fallbacks": ["gpt-4o"],
        },
        invalid=lambda w: {"name": "no spaces", "provider": w.provider.pk, "provider_model": "m"},
        invalid_field="name",
        update={"fallbacks": ["openai/gpt-4o-mini"]},
        disposable=lambda w: services.model_route_create(
            name="spare-route", provider=w.provider, provider_model="m"
        ),
    ),
    Endpoint(
        path="budgets",
        model=Budget,
        existing=lambda w: w.budget,
        create=lambda w: {"team": w.team.pk, "amount_micros": 5_000_000, "period": "1M"},
        invalid=lambda w: {"team": w.team.pk, "amount_micros": -1, "period": "1d"},
        invalid_field="amount_micros",
        update={"amount_micros": 7_000_000},
        disposable=lambda w: governance.budget_create(owner=w.key, amount_micros=1, period="1h"),
        other_team=lambda w: w.other_budget,
    ),
    Endpoint(
        path="guardrail-policies",
        model=GuardrailPolicy,
        existing=lambda w: w.guardrail,
        create=lambda w: {
            "name": "pii",
            "team": w.team.pk,
            "direction": "request",
            "detectors": {"email": "redact"},
        },
        invalid=lambda w: {"name": "pii", "detectors": {"email": "shout"}},
        invalid_field="detectors",
        update={"max_messages": 40},
        disposable=lambda w: governance.guardrail_policy_create(name="spare-guardrail"),
    ),
    Endpoint(
        path="rate-limits",
        model=RateLimit,
        existing=lambda w: w.limit,
        create=lambda w: {"virtual_key": w.key.pk, "metric": "tokens", "limit": 1000},
        invalid=lambda w: {"virtual_key": w.key.pk, "metric": "bananas", "limit": 1},
        invalid_field="metric",
        update={"limit": 50},
        disposable=lambda w: governance.rate_limit_create(owner=w.team, metric="tokens", limit=9),
        other_team=lambda w: w.other_limit,
    ),
    Endpoint(
        path="prices",
        model=ModelPrice,
        existing=lambda w: w.price,
        create=lambda w: {
            "provider_kind": "openai",
            "model": "gpt-5",
            "input_micros_per_mtok": 1_250_000,
            "output_micros_per_mtok": 10_000_000,
            "effective_from": "2026-01-01T00:00:00Z",
        },
        invalid=lambda w: {
            "provider_kind": "openai",
            "model": "gpt-5",
            "input_micros_per_mtok": -1,
            "output_micros_per_mtok": 1,
            "effective_from": "2026-01-01T00:00:00Z",
        },
        invalid_field="input_micros_per_mtok",
        update={"output_micros_per_mtok": 3},
        disposable=lambda w: governance.model_price_set(
            provider_kind="openai",
            model="spare",
            input_micros_per_mtok=1,
            output_micros_per_mtok=1,
            effective_from=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        )[0],
    ),
    Endpoint(
        path="role-assignments",
        model=RoleAssignment,
        existing=lambda w: RoleAssignment.objects.get(user__username="vera"),
        create=lambda w: {"user": "newbie", "role": "viewer"},
        invalid=lambda w: {"user": "newbie", "role": "team_manager"},
        invalid_field="team",
        disposable=lambda w: services.role_assignment_create(user=w.spare_user, role="auditor"),
    ),
    Endpoint(
        path="api-tokens",
        model=ApiToken,
        existing=lambda w: services.api_token_create(user=w.spare_user, name="spare-token")[0],
        create=lambda w: {"name": "ci-deploy", "read_only": True},
        invalid=lambda w: {"name": "Not A Slug!"},
        invalid_field="name",
    ),
]
UPDATABLE = [e for e in ENDPOINTS if e.update is not None]
DELETABLE = [e for e in ENDPOINTS if e.disposable is not None]
TEAM_SCOPED = [e for e in ENDPOINTS if e.other_team is not None]
# What a team manager may read and change (keys.access), by path.
MANAGER_READS = {"teams", "virtual-keys", "budgets", "rate-limits", "routes", "prices"}
MANAGER_WRITES = {"virtual-keys", "budgets", "rate-limits"}
