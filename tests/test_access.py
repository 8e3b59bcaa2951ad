"""The roles: who sees and changes what (keys.access), the same for console and API."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from governance import services as governance
from governance.models import Budget, ModelPrice, RateLimit, RequestRecord
from keys import services
from keys.access import operator_access
from keys.models import ApiToken, Customer, ModelRoute, Provider, ProviderKey, Team, VirtualKey
from tests.audit_fixtures import build_world

pytestmark = pytest.mark.django_db

User = get_user_model()


@pytest.fixture
def world():
    world = build_world()
    world.other_team = services.team_create(name="ads")
    world.other_key, _ = services.virtual_key_create(name="ads-prod", team=world.other_team)
    world.budget = governance.budget_create(owner=world.team, amount_micros=1, period="1d")
    world.key_limit = governance.rate_limit_create(owner=world.key, metric="requests", limit=5)
    world.other_budget = governance.budget_create(
        owner=world.other_team, amount_micros=1, period="1d"
    )
    world.customer_budget = governance.budget_create(
        owner=world.customer, amount_micros=1, period="1d"
    )
    for team in (world.team, world.other_team):
        RequestRecord.objects.create(
            request_id=f"r-{team.name}", time=timezone.now(), team_id=team.pk, status=200
        )
    return world


def person(name: str, *roles: str, teams: tuple[Team, ...] = ()) -> User:
    user = User.objects.create_user(name)
    for role in roles:
        services.role_assignment_create(user=user, role=role)
    for team in teams:
        services.role_assignment_create(user=user, role="team_manager", team=team)
    return user


def names(queryset) -> set[str]:
    return {str(obj.pk) if not hasattr(obj, "name") else obj.name for obj in queryset}


def test_a_superuser_is_an_admin_without_any_assignment(world):
    access = operator_access(User.objects.create_superuser("root"))
    assert access.is_admin
    for model in (Customer, Team, VirtualKey, Provider, ProviderKey, Budget, ApiToken, AuditEvent):
        assert access.can_view(model)
    assert access.can_change(world.other_key)
    assert access.can_create(Customer)
    assert not access.can_write(AuditEvent)


def test_a_user_without_a_role_sees_and_changes_nothing(world):
    access = operator_access(person("nobody"))
    assert not access.is_operator
    for model in (Customer, Team, VirtualKey, ModelRoute, RequestRecord, AuditEvent):
        assert not access.can_view(model)
        assert not access.scope(model.objects.all()).exists()
    assert not access.can_change(world.key)


def test_an_anonymous_or_inactive_user_has_no_access(world):
    from django.contrib.auth.models import AnonymousUser

    assert not operator_access(AnonymousUser()).is_operator
    admin = User.objects.create_superuser("gone", is_active=False)
    assert not operator_access(admin).is_operator


def test_a_team_manager_sees_only_their_teams_keys_budgets_limits_and_log(world):
    access = operator_access(person("tina", teams=(world.team,)))
    assert names(access.visible_teams()) == {"search"}
    assert names(access.scope(VirtualKey.objects.all())) == {"search-prod"}
    assert set(access.scope(Budget.objects.all())) == {world.budget}
    assert set(access.scope(RateLimit.objects.all())) == {world.key_limit}
    assert [r.request_id for r in access.scope(RequestRecord.objects.all())] == ["r-search"]


def test_a_team_manager_changes_their_teams_keys_budgets_and_limits_only(world):
    access = operator_access(person("tina", teams=(world.team,)))
    assert access.can_change(world.key)
    assert access.can_change(world.budget)
    assert access.can_change(world.key_limit)
    assert not access.can_change(world.other_key)
    assert not access.can_change(world.other_budget)
    assert not access.can_change(world.customer_budget)
    assert not access.can_change(world.team)  # the team's own policy is the admin's
    assert access.can_create(VirtualKey, owner=world.team)
    assert access.can_create(Budget, owner=world.key)
    assert not access.can_create(VirtualKey, owner=world.other_team)
    assert not access.can_create(Budget, owner=world.customer)
    assert not access.can_create(Budget)
    assert not access.can_create(Team)


def test_a_team_manager_reads_the_catalogue_but_not_providers_customers_or_the_trail(world):
    access = operator_access(person("tina", teams=(world.team,)))
    assert access.can_view(ModelRoute) and access.can_view(ModelPrice)
    assert not access.can_write(ModelRoute)
    for model in (Customer, Provider, ProviderKey, ApiToken, AuditEvent):
        assert not access.can_view(model)


def test_a_viewer_reads_everything_and_changes_nothing(world):
    access = operator_access(person("vera", "viewer"))
    for model in (Customer, Team, VirtualKey, Provider, ProviderKey, Budget, AuditEvent):
        assert access.can_view(model)
        assert not access.can_write(model)
    assert access.scope(VirtualKey.objects.all()).count() == 2
    assert not access.can_change(world.key)
    assert not access.can_create(VirtualKey, owner=world.team)


def test_an_auditor_reads_the_audit_trail_only(world):
    access = operator_access(person("audrey", "auditor"))
    assert access.can_view(AuditEvent)
    assert access.scope(AuditEvent.objects.all()).exists()
    for model in (Customer, Team, VirtualKey, RequestRecord, ModelRoute):
        assert not access.can_view(model)
    assert not access.can_write(AuditEvent)


def test_rights_are_the_union_of_a_users_roles(world):
    access = operator_access(person("mixed", "viewer", "auditor", teams=(world.team,)))
    assert access.scope(VirtualKey.objects.all()).count() == 2
    assert access.can_change(world.key)
    assert not access.can_change(world.other_key)
    assert access.can_view(AuditEvent)


def test_a_read_only_token_narrows_even_an_admin_to_reads(world):
    access = operator_access(User.objects.create_superuser("root"), read_only=True)
    assert access.can_view(VirtualKey)
    assert not access.can_change(world.key)
    assert not access.can_create(Customer)


def test_rights_are_read_in_one_query(world):
    user = person("mixed", "viewer", teams=(world.team, world.other_team))
    with CaptureQueriesContext(connection) as queries:
        operator_access(user)
    assert len(queries) == 1


def test_a_team_manager_assignment_needs_a_team_and_other_roles_none(world):
    user = person("x")
    with pytest.raises(ValidationError):
        services.role_assignment_create(user=user, role="team_manager")
    with pytest.raises(ValidationError):
        services.role_assignment_create(user=user, role="viewer", team=world.team)
    services.role_assignment_create(user=user, role="viewer")
    with pytest.raises(ValidationError):
        services.role_assignment_create(user=user, role="viewer")


def test_an_api_token_cannot_be_created_already_expired(world):
    with pytest.raises(services.ServiceError):
        services.api_token_create(
            user=person("ci"), name="ci", expires_at=timezone.now() - dt.timedelta(seconds=1)
        )


def test_an_api_token_keeps_only_its_prefix_and_hash(world):
    token, secret = services.api_token_create(user=person("ci"), name="ci")
    assert secret.startswith("gw-api-") and token.prefix in secret
    stored = ApiToken.objects.filter(pk=token.pk).values().get()
    assert secret not in str(stored)
