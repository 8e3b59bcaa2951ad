"""Writes to the org tree, virtual keys, providers and routes.

Every function here is the one way its change happens: the admin, the REST
API, the declarative configuration and management commands all call them.
Each change bumps the configuration revision so that every gateway process
rebuilds its snapshot.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import audit_deletions, audit_event_record
from audit.snapshots import audit_snapshot
from keys import crypto, tokens
from keys.models import (
    ApiToken,
    ConfigRevision,
    Customer,
    ModelRoute,
    Provider,
    ProviderKey,
    RoleAssignment,
    StoreContent,
    Team,
    VirtualKey,
)

logger = logging.getLogger(__name__)


class ServiceError(ValueError):
    """A change that cannot be made as asked; the message says why."""


# --- configuration revision --------------------------------------------------


def config_revision_bump() -> str:
    """Mark the configuration as changed; notify the data plane after commit."""
    revision = uuid.uuid4().hex
    ConfigRevision.objects.update_or_create(id=1, defaults={"revision": revision})
    transaction.on_commit(lambda: _publish_revision(revision))
    return revision


def _publish_revision(revision: str) -> None:
    if not settings.REDIS_URL:
        return  # embedded processes poll the revision row
    from gateway_project.redis_client import CONFIG_CHANNEL, redis_key, sync_client

    try:
        sync_client().publish(redis_key(CONFIG_CHANNEL), revision)
    except Exception:  # the poll will pick the change up; never fail a commit over it
        logger.warning("could not publish the configuration revision", exc_info=True)


def _save(instance: Any) -> None:
    instance.full_clean()
    instance.save()
    config_revision_bump()


def _apply_fields(instance: Any, fields: dict[str, Any], allowed: set[str]) -> bool:
    unknown = set(fields) - allowed
    if unknown:
        raise ServiceError(f"cannot change {', '.join(sorted(unknown))}")
    changed = False
    for name, value in fields.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed = True
    return changed


# --- customers and teams -----------------------------------------------------

# Access rules every level carries (see ``keys.models.PolicyFields``).
POLICY_FIELDS = {"allowed_models", "max_concurrent_requests", "cache_ttl_seconds"}
CUSTOMER_FIELDS = {"description", "metadata", "cache_shared_across_teams", *POLICY_FIELDS}
TEAM_FIELDS = {"customer", "description", "metadata", "store_content", *POLICY_FIELDS}


@transaction.atomic
def customer_create(
    *,
    name: str,
    description: str = "",
    metadata: dict | None = None,
    allowed_models: list[str] | None = None,
    max_concurrent_requests: int | None = None,
    cache_ttl_seconds: int | None = None,
    cache_shared_across_teams: bool = False,
) -> Customer:
    customer = Customer(
        name=name,
        description=description,
        metadata=metadata or {},
        allowed_models=allowed_models or [],
        max_concurrent_requests=max_concurrent_requests,
        cache_ttl_seconds=cache_ttl_seconds,
        cache_shared_across_teams=cache_shared_across_teams,
    )
    _save(customer)
    audit_event_record(
        action="create", instance=customer, before=None, after=audit_snapshot(customer)
    )
    return customer


@transaction.atomic
def customer_update(*, customer: Customer, **fields: Any) -> Customer:
    before = audit_snapshot(customer)
    if _apply_fields(customer, fields, CUSTOMER_FIELDS):
        _save(customer)
        audit_event_record(
            action="update", instance=customer, before=before, after=audit_snapshot(customer)
        )
    return customer


@transaction.atomic
def team_create(
    *,
    name: str,
    customer: Customer | None = None,
    description: str = "",
    metadata: dict | None = None,
    allowed_models: list[str] | None = None,
    max_concurrent_requests: int | None = None,
    cache_ttl_seconds: int | None = None,
    store_content: bool = False,
) -> Team:
    team = Team(
        name=name,
        customer=customer,
        description=description,
        metadata=metadata or {},
        allowed_models=allowed_models or [],
        max_concurrent_requests=max_concurrent_requests,
        cache_ttl_seconds=cache_ttl_seconds,
        store_content=store_content,
    )
    _save(team)
    audit_event_record(action="create", instance=team, before=None, after=audit_snapshot(team))
    return team


@transaction.atomic
def team_update(*, team: Team, **fields: Any) -> Team:
    before = audit_snapshot(team)
    if _apply_fields(team, fields, TEAM_FIELDS):
        _save(team)
        audit_event_record(
            action="update", instance=team, before=before, after=audit_snapshot(team)
        )
    return team


# --- virtual keys --------------------------------------------------------------

VIRTUAL_KEY_FIELDS = {
    "team",
    "expires_at",
    "metadata",
    "allowed_ips",
    "may_pin_provider_keys",
    "store_content",
    *POLICY_FIELDS,
}


@transaction.atomic
def virtual_key_create(
    *,
    name: str,
    team: Team,
    expires_at: dt.datetime | None = None,
    metadata: dict | None = None,
    secret: str | None = None,
    secret_env: str = "",
    allowed_models: list[str] | None = None,
    max_concurrent_requests: int | None = None,
    cache_ttl_seconds: int | None = None,
    allowed_ips: list[str] | None = None,
    may_pin_provider_keys: bool = False,
    store_content: str = StoreContent.INHERIT,
) -> tuple[VirtualKey, str]:
    """Create a key; returns it with its secret, which is never available again.

    ``secret`` lets a declared key keep a secret chosen outside the gateway
    (GitOps); it must have the virtual key format.
    """
    if secret is None:
        secret = tokens.generate_key()
    elif not tokens.is_well_formed(secret):
        raise ServiceError(
            f"a virtual key must be {tokens.KEY_SCHEME} followed by "
            f"{tokens.PREFIX_LENGTH + tokens.SECRET_LENGTH} letters or digits"
        )
    prefix = tokens.key_prefix(secret)
    if VirtualKey.objects.filter(prefix=prefix).exists():
        raise ServiceError("a virtual key with the same prefix exists already")
    key = VirtualKey(
        name=name,
        team=team,
        prefix=prefix,
        secret_hash=tokens.hash_key(secret),
        secret_env=secret_env,
        expires_at=expires_at,
        metadata=metadata or {},
        allowed_models=allowed_models or [],
        max_concurrent_requests=max_concurrent_requests,
        cache_ttl_seconds=cache_ttl_seconds,
        allowed_ips=allowed_ips or [],
        may_pin_provider_keys=may_pin_provider_keys,
        store_content=store_content,
    )
    _save(key)
    audit_event_record(action="create", instance=key, before=None, after=audit_snapshot(key))
    return key, secret


@transaction.atomic
def virtual_key_update(*, key: VirtualKey, **fields: Any) -> VirtualKey:
    before = audit_snapshot(key)
    if _apply_fields(key, fields, VIRTUAL_KEY_FIELDS):
        _save(key)
        audit_event_record(action="update", instance=key, before=before, after=audit_snapshot(key))
    return key


@transaction.atomic
def virtual_key_replace_secret(*, key: VirtualKey, secret: str, secret_env: str = "") -> VirtualKey:
    """Give a declared key a new secret (its environment variable changed)."""
    if not tokens.is_well_formed(secret):
        raise ServiceError(f"the secret of {key.name} does not have the virtual key format")
    prefix = tokens.key_prefix(secret)
    if VirtualKey.objects.filter(prefix=prefix).exclude(pk=key.pk).exists():
        raise ServiceError("a virtual key with the same prefix exists already")
    before = audit_snapshot(key)
    key.prefix = prefix
    key.secret_hash = tokens.hash_key(secret)
    key.secret_env = secret_env
    _save(key)
    audit_event_record(action="rotate", instance=key, before=before, after=audit_snapshot(key))
    return key


@transaction.atomic
def virtual_key_rotate(
    *, key: VirtualKey, grace: dt.timedelta = dt.timedelta(hours=24)
) -> tuple[VirtualKey, str]:
    """Give ``key`` a new secret; the current one keeps working for ``grace``."""
    if not key.is_active:
        raise ServiceError("a revoked key cannot be rotated")
    secret = tokens.generate_key()
    before = audit_snapshot(key)
    key.previous_prefix = key.prefix
    key.previous_secret_hash = key.secret_hash
    key.previous_valid_until = timezone.now() + grace
    key.prefix = tokens.key_prefix(secret)
    key.secret_hash = tokens.hash_key(secret)
    key.secret_env = ""
    _save(key)
    audit_event_record(action="rotate", instance=key, before=before, after=audit_snapshot(key))
    return key, secret


@transaction.atomic
def virtual_key_revoke(*, key: VirtualKey) -> VirtualKey:
    """Stop accepting a key, at once and for good."""
    if key.is_active:
        before = audit_snapshot(key)
        key.is_active = False
        key.revoked_at = timezone.now()
        _save(key)
        audit_event_record(action="revoke", instance=key, before=before, after=audit_snapshot(key))
    return key


# --- providers, provider keys, routes --------------------------------------------

PROVIDER_FIELDS = {"kind", "base_url", "options", "is_active", "allow_private_network"}
PROVIDER_KEY_FIELDS = {"weight", "is_active"}
ROUTE_FIELDS = {"provider", "provider_model", "fallbacks", "is_active"}


@transaction.atomic
def provider_create(
    *,
    name: str,
    kind: str,
    base_url: str,
    options: dict[str, Any] | None = None,
    is_active: bool = True,
    allow_private_network: bool = False,
) -> Provider:
    """A new provider; a base URL into a private network needs
    ``allow_private_network`` (``keys.addresses``)."""
    provider = Provider(
        name=name,
        kind=kind,
        base_url=base_url.rstrip("/"),
        options=options or {},
        is_active=is_active,
        allow_private_network=allow_private_network,
    )
    _save(provider)
    audit_event_record(
        action="create", instance=provider, before=None, after=audit_snapshot(provider)
    )
    return provider


@transaction.atomic
def provider_update(*, provider: Provider, **fields: Any) -> Provider:
    if "base_url" in fields:
        fields["base_url"] = fields["base_url"].rstrip("/")
    before = audit_snapshot(provider)
    if _apply_fields(provider, fields, PROVIDER_FIELDS):
        _save(provider)
        audit_event_record(
            action="update", instance=provider, before=before, after=audit_snapshot(provider)
        )
    return provider


@transaction.atomic
def provider_key_create(
    *,
    provider: Provider,
    name: str,
    secret: str,
    weight: int = 1,
    is_active: bool = True,
    secret_env: str = "",
) -> ProviderKey:
    """Store a provider's API key, encrypted; only its last four characters stay readable."""
    if not secret or secret != secret.strip():
        raise ServiceError("a provider key must be a non-empty value without surrounding spaces")
    key = ProviderKey(
        provider=provider,
        name=name,
        encrypted_secret=crypto.encrypt(secret),
        last_four=secret[-4:],
        weight=weight,
        is_active=is_active,
        secret_env=secret_env,
    )
    _save(key)
    audit_event_record(action="create", instance=key, before=None, after=audit_snapshot(key))
    return key


@transaction.atomic
def provider_key_update(*, key: ProviderKey, **fields: Any) -> ProviderKey:
    before = audit_snapshot(key)
    if _apply_fields(key, fields, PROVIDER_KEY_FIELDS):
        _save(key)
        audit_event_record(action="update", instance=key, before=before, after=audit_snapshot(key))
    return key


@transaction.atomic
def provider_key_replace_secret(
    *, key: ProviderKey, secret: str, secret_env: str | None = None
) -> ProviderKey:
    if not secret or secret != secret.strip():
        raise ServiceError("a provider key must be a non-empty value without surrounding spaces")
    before = audit_snapshot(key)
    key.encrypted_secret = crypto.encrypt(secret)
    key.last_four = secret[-4:]
    if secret_env is not None:
        key.secret_env = secret_env
    _save(key)
    audit_event_record(action="rotate", instance=key, before=before, after=audit_snapshot(key))
    return key


@transaction.atomic
def provider_key_delete(*, key: ProviderKey) -> None:
    before = audit_snapshot(key)
    key.delete()
    config_revision_bump()
    audit_event_record(action="delete", instance=key, before=before, after=None)


@transaction.atomic
def model_route_create(
    *,
    name: str,
    provider: Provider,
    provider_model: str,
    fallbacks: list[str] | None = None,
    is_active: bool = True,
) -> ModelRoute:
    route = ModelRoute(
        name=name,
        provider=provider,
        provider_model=provider_model,
        fallbacks=fallbacks or [],
        is_active=is_active,
    )
    _save(route)
    audit_event_record(action="create", instance=route, before=None, after=audit_snapshot(route))
    return route


@transaction.atomic
def model_route_update(*, route: ModelRoute, **fields: Any) -> ModelRoute:
    before = audit_snapshot(route)
    if _apply_fields(route, fields, ROUTE_FIELDS):
        _save(route)
        audit_event_record(
            action="update", instance=route, before=before, after=audit_snapshot(route)
        )
    return route


@transaction.atomic
def model_route_delete(*, route: ModelRoute) -> None:
    before = audit_snapshot(route)
    route.delete()
    config_revision_bump()
    audit_event_record(action="delete", instance=route, before=before, after=None)


# --- deletions -------------------------------------------------------------------


def _delete_with_cascade(instance: Any) -> None:
    # One event per object removed, cascaded ones included; objects that
    # others still PROTECT raise ProtectedError and nothing is removed.
    with audit_deletions([instance]):
        instance.delete()
        config_revision_bump()


@transaction.atomic
def customer_delete(*, customer: Customer) -> None:
    """Remove a customer without teams (its budgets and limits go with it)."""
    _delete_with_cascade(customer)


@transaction.atomic
def team_delete(*, team: Team) -> None:
    """Remove a team without keys (its budgets, limits and managers go with it)."""
    _delete_with_cascade(team)


@transaction.atomic
def provider_delete(*, provider: Provider) -> None:
    """Remove a provider no route uses, with its provider keys."""
    _delete_with_cascade(provider)


# --- operators: role assignments and API tokens ------------------------------------
#
# Not part of the data plane's configuration: no revision bump.


@transaction.atomic
def role_assignment_create(*, user: Any, role: str, team: Team | None = None) -> RoleAssignment:
    """Give ``user`` a role (team managers: of ``team``); see ``keys.access``."""
    assignment = RoleAssignment(user=user, role=role, team=team)
    assignment.full_clean()
    assignment.save()
    audit_event_record(
        action="create", instance=assignment, before=None, after=audit_snapshot(assignment)
    )
    return assignment


@transaction.atomic
def role_assignment_delete(*, assignment: RoleAssignment) -> None:
    before = audit_snapshot(assignment)
    description = str(assignment)
    assignment.delete()
    audit_event_record(
        action="delete", instance=assignment, before=before, after=None, object_repr=description
    )


@transaction.atomic
def api_token_create(
    *,
    user: Any,
    name: str,
    read_only: bool = False,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create an admin API token acting as ``user``; returns it with its secret, shown once."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError("an API token cannot expire in the past")
    secret = tokens.generate_key(tokens.API_TOKEN_SCHEME)
    token = ApiToken(
        name=name,
        user=user,
        prefix=tokens.key_prefix(secret, tokens.API_TOKEN_SCHEME),
        secret_hash=tokens.hash_key(secret),
        read_only=read_only,
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    audit_event_record(action="create", instance=token, before=None, after=audit_snapshot(token))
    return token, secret


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Stop accepting an API token, at once and for good."""
    if token.revoked_at is None:
        before = audit_snapshot(token)
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        audit_event_record(
            action="revoke", instance=token, before=before, after=audit_snapshot(token)
        )
    return token
