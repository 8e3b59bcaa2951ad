"""Every change made through keys.services records exactly one audit event."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.models import AuditEvent
from audit.services import audit_event_record
from audit.snapshots import is_secret_field
from keys import services, tokens
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
from tests.audit_fixtures import PROVIDER_SECRET, World, build_world, new_events

NEW_KEY_SECRET = "sk-gw-" + "R" * (tokens.PREFIX_LENGTH + tokens.SECRET_LENGTH)
NEW_PROVIDER_SECRET = "sk-provider-plaintext-0002"


@dataclass(frozen=True)
class Step:
    """One service call and the event it must record."""

    call: Callable[[World], Any]
    action: str
    model: type
    field: str
    before: Any  # the field's value before (unused when the call creates the object)
    after: Any  # and after (unused when it deletes it); "(set)": any value but None
    # Run before the events are counted; keeps what it made on the world as ``spare``.
    setup: Callable[[World], Any] | None = None


def operator(world: World) -> Any:
    return get_user_model().objects.create_user("olivia")


STEPS = {
    "customer_create": Step(
        lambda w: services.customer_create(name="globex"),
        "create",
        Customer,
        "name",
        None,
        "globex",
    ),
    "customer_update": Step(
        lambda w: services.customer_update(customer=w.customer, description="ACME Corp"),
        "update",
        Customer,
        "description",
        "ACME",
        "ACME Corp",
    ),
    "team_create": Step(
        lambda w: services.team_create(name="ads", customer=w.customer),
        "create",
        Team,
        "name",
        None,
        "ads",
    ),
    "team_update": Step(
        lambda w: services.team_update(team=w.team, description="Search"),
        "update",
        Team,
        "description",
        "",
        "Search",
    ),
    "virtual_key_create": Step(
        lambda w: services.virtual_key_create(name="ads-prod", team=w.team),
        "create",
        VirtualKey,
        "name",
        None,
        "ads-prod",
    ),
    "virtual_key_update": Step(
        lambda w: services.virtual_key_update(key=w.key, metadata={"owner": "bob"}),
        "update",
        VirtualKey,
        "metadata",
        {},
        {"owner": "bob"},
    ),
    "virtual_key_replace_secret": Step(
        lambda w: services.virtual_key_replace_secret(
            key=w.key, secret=NEW_KEY_SECRET, secret_env="NEW_KEY"
        ),
        "rotate",
        VirtualKey,
        "secret",
        "set",
        "changed",
    ),
    "virtual_key_rotate": Step(
        lambda w: services.virtual_key_rotate(key=w.key),
        "rotate",
        VirtualKey,
        "secret",
        "set",
        "changed",
    ),
    "virtual_key_revoke": Step(
        lambda w: services.virtual_key_revoke(key=w.key),
        "revoke",
        VirtualKey,
        "is_active",
        True,
        False,
    ),
    "provider_create": Step(
        lambda w: services.provider_create(
            name="local",
            kind="openai",
            base_url="http://127.0.0.1:9/v1",
            allow_private_network=True,
        ),
        "create",
        Provider,
        "name",
        None,
        "local",
    ),
    "provider_update": Step(
        lambda w: services.provider_update(provider=w.provider, base_url="https://b.example/v1"),
        "update",
        Provider,
        "base_url",
        "https://api.example/v1",
        "https://b.example/v1",
    ),
    "provider_key_create": Step(
        lambda w: services.provider_key_create(
            provider=w.provider, name="secondary", secret=NEW_PROVIDER_SECRET
        ),
        "create",
        ProviderKey,
        "secret",
        None,
        "set",
    ),
    "provider_key_update": Step(
        lambda w: services.provider_key_update(key=w.provider_key, weight=5),
        "update",
        ProviderKey,
        "weight",
        1,
        5,
    ),
    "provider_key_replace_secret": Step(
        lambda w: services.provider_key_replace_secret(
            key=w.provider_key, secret=NEW_PROVIDER_SECRET
        ),
        "rotate",
        ProviderKey,
        "secret",
        "set",
        "changed",
    ),
    "provider_key_delete": Step(
        lambda w: services.provider_key_delete(key=w.provider_key),
        "delete",
        ProviderKey,
        "name",
        "primary",
        None,
    ),
    "model_route_create": Step(
        lambda w: services.model_route_create(
            name="gpt-4o-mini", provider=w.provider, provider_model="gpt-4o-mini"
        ),
        "create",
        ModelRoute,
        "name",
        None,
        "gpt-4o-mini",
    ),
    "model_route_update": Step(
        lambda w: services.model_route_update(route=w.route, provider_model="gpt-4o-2024"),
        "update",
        ModelRoute,
        "provider_model",
        "gpt-4o",
        "gpt-4o-2024",
    ),
    "model_route_delete": Step(
        lambda w: services.model_route_delete(route=w.route),
        "delete",
        ModelRoute,
        "name",
        "gpt-4o",
        None,
    ),
    "customer_delete": Step(
        lambda w: services.customer_delete(customer=w.spare),
        "delete",
        Customer,
        "name",
        "initech",
        None,
        setup=lambda w: services.customer_create(name="initech"),
    ),
    "team_delete": Step(
        lambda w: services.team_delete(team=w.spare),
        "delete",
        Team,
        "name",
        "idle",
        None,
        setup=lambda w: services.team_create(name="idle"),
    ),
    "provider_delete": Step(
        lambda w: services.provider_delete(provider=w.spare),
        "delete",
        Provider,
        "name",
        "spare",
        None,
        setup=lambda w: services.provider_create(
            name="spare", kind="openai", base_url="https://spare.example/v1"
        ),
    ),
    "role_assignment_create": Step(
        lambda w: services.role_assignment_create(user=w.spare, role="team_manager", team=w.team),
        "create",
        RoleAssignment,
        "role",
        None,
        "team_manager",
        setup=operator,
    ),
    "role_assignment_delete": Step(
        lambda w: services.role_assignment_delete(assignment=w.spare),
        "delete",
        RoleAssignment,
        "role",
        "viewer",
        None,
        setup=lambda w: services.role_assignment_create(user=operator(w), role="viewer"),
    ),
    "api_token_create": Step(
        lambda w: services.api_token_create(user=w.spare, name="ci-deployer"),
        "create",
        ApiToken,
        "secret",
        None,
        "set",
        setup=operator,
    ),
    "api_token_revoke": Step(
        lambda w: services.api_token_revoke(token=w.spare),
        "revoke",
        ApiToken,
        "revoked_at",
        None,
        "(set)",
        setup=lambda w: services.api_token_create(user=operator(w), name="ci")[0],
    ),
}

# Calls that change nothing: the services write nothing, so nothing is recorded.
NO_OPS = {
    "customer_update": lambda w: services.customer_update(customer=w.customer, description="ACME"),
    "team_update": lambda w: services.team_update(team=w.team, customer=w.customer),
    "virtual_key_update": lambda w: services.virtual_key_update(key=w.key, metadata={}),
    "virtual_key_replace_secret": lambda w: services.virtual_key_replace_secret(
        key=w.key, secret=w.key_secret
    ),
    "provider_update": lambda w: services.provider_update(
        provider=w.provider, base_url="https://api.example/v1/"
    ),
    "provider_key_update": lambda w: services.provider_key_update(key=w.provider_key, weight=1),
    "model_route_update": lambda w: services.model_route_update(
        route=w.route, provider_model="gpt-4o"
    ),
}

# Not changes of their own: called by the services above.
NOT_AUDITED = {"config_revision_bump"}


def service_functions() -> set[str]:
    return {
        name
        for name, function in inspect.getmembers(services, inspect.isfunction)
        if function.__module__ == services.__name__ and not name.startswith("_")
    }


def secrets_of(world: World) -> list[str]:
    world.key.refresh_from_db()
    return [
        world.key_secret,
        world.key.secret_hash,
        NEW_KEY_SECRET,
        tokens.hash_key(NEW_KEY_SECRET),
        PROVIDER_SECRET,
        NEW_PROVIDER_SECRET,
        world.provider_key.encrypted_secret,
    ]


def test_the_walk_covers_every_service_that_changes_something():
    assert service_functions() - NOT_AUDITED <= set(STEPS)


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(STEPS))
def test_each_service_records_exactly_one_event_with_before_and_after(name):
    if name not in service_functions():
        pytest.skip(f"keys.services has no {name} (yet)")
    step = STEPS[name]
    world = build_world()
    if step.setup is not None:
        world.spare = step.setup(world)
    secrets = secrets_of(world)

    with new_events() as events:
        step.call(world)

    assert len(events) == 1
    [event] = events
    assert event.action == step.action
    assert event.object_type == step.model._meta.label_lower
    assert (event.actor_kind, event.actor_id, event.actor_name) == ("system", None, "system")
    if step.action == "create":
        assert event.before is None
        assert event.after[step.field] == step.after
        assert step.model.objects.filter(pk=event.object_id).exists()
    elif step.action == "delete":
        assert event.after is None
        assert event.before[step.field] == step.before
        assert not step.model.objects.filter(pk=event.object_id).exists()
    else:
        assert event.before[step.field] == step.before
        if step.after == "(set)":
            assert event.after[step.field] is not None
        else:
            assert event.after[step.field] == step.after
        assert step.model.objects.filter(pk=event.object_id).exists()
    recorded = json.dumps([event.before, event.after])
    for secret in secrets:
        assert secret not in recorded
    for snapshot in (event.before, event.after):
        assert not any(is_secret_field(name) for name in snapshot or {})


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(NO_OPS))
def test_an_update_that_changes_nothing_records_nothing(name):
    world = build_world()
    with new_events() as events:
        NO_OPS[name](world)
    assert events == []


@pytest.mark.django_db
def test_revoking_a_revoked_key_records_nothing():
    world = build_world()
    services.virtual_key_revoke(key=world.key)
    with new_events() as events:
        services.virtual_key_revoke(key=world.key)
    assert events == []


class Boom(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_change_rolled_back_with_its_transaction_leaves_no_event():
    with new_events() as events, pytest.raises(Boom), transaction.atomic():
        services.team_create(name="doomed")
        assert AuditEvent.objects.filter(object_repr="doomed").exists()
        raise Boom
    assert events == []
    assert not Team.objects.filter(name="doomed").exists()


@pytest.mark.django_db(transaction=True)
def test_a_change_that_fails_validation_records_nothing():
    with new_events() as events, pytest.raises(ValidationError):
        services.team_create(name="Not A Slug!")
    assert events == []


@pytest.mark.django_db(transaction=True)
def test_an_event_cannot_be_recorded_outside_the_transaction_of_its_change():
    team = Team.objects.create(name="raw")
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit_event_record(action="update", instance=team, before={"id": 1}, after=None)
