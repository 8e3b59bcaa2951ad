"""The declarative configuration file: apply it, export it.

One YAML document declares providers (with their keys by environment
variable), routes, customers, teams and virtual keys. Applying is idempotent
and goes through ``keys.services`` (so it is audited like any change);
objects the file does not mention are left alone. Exporting writes the
current state in the same format, secrets only by reference, so that
applying an export changes nothing. The format is documented in
``docs/configuration.md``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from governance import services as governance_services
from governance.guardrails import RULE_FIELDS
from governance.models import Budget, GuardrailPolicy, RateLimit
from keys import crypto, services, tokens
from keys.models import (
    Customer,
    ModelRoute,
    Provider,
    ProviderKey,
    StoreContent,
    Team,
    VirtualKey,
)

FORMAT_VERSION = 1


class ConfigError(ValueError):
    """The file cannot be applied; the message says where and why."""


@dataclass
class ApplyReport:
    """What applying a file did, object by object."""

    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Secrets generated for declared keys without one: shown once, never stored.
    new_secrets: dict[str, str] = field(default_factory=dict)

    def record(self, outcome: str, label: str) -> None:
        getattr(self, outcome).append(label)

    @property
    def is_noop(self) -> bool:
        return not self.created and not self.changed

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.changed)} changed, "
            f"{len(self.unchanged)} unchanged"
        )


# --- reading the file ---------------------------------------------------------------


def load_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return document or {}


class _Reader:
    """Typed access to one mapping of the file, with its location for errors."""

    def __init__(self, data: Any, where: str, allowed: set[str]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        self.data = data
        self.where = where

    def get(
        self,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        if name not in self.data or self.data[name] is None:
            if required:
                raise ConfigError(f"{self.where}: '{name}' is required")
            return default
        value = self.data[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ConfigError(f"{self.where}.{name}: wrong type ({type(value).__name__})")
        return value

    def items(self, name: str) -> list[Any]:
        value = self.get(name, list, [])
        return value

    def datetime(self, name: str) -> dt.datetime | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            parsed = value
        elif isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is None:
                raise ConfigError(f"{self.where}.{name}: not an ISO 8601 date-time")
        else:
            raise ConfigError(f"{self.where}.{name}: not an ISO 8601 date-time")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed


def _env_secret(variable: str, where: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{where}: the environment variable {variable} is not set")
    return value


# --- applying ---------------------------------------------------------------------


def apply_config(document: Any) -> ApplyReport:
    """Make the database match ``document``; all or nothing."""
    root = _Reader(
        document, "config", {"version", "providers", "routes", "guardrails", "customers", "teams"}
    )
    version = root.get("version", int, FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ConfigError(f"config.version: this gateway reads version {FORMAT_VERSION}")
    report = ApplyReport()
    try:
        with transaction.atomic():
            for index, item in enumerate(root.items("providers")):
                _apply_provider(item, f"providers[{index}]", report)
            for index, item in enumerate(root.items("routes")):
                _apply_route(item, f"routes[{index}]", report)
            _apply_guardrails(None, root, report)
            for index, item in enumerate(root.items("customers")):
                _apply_customer(item, f"customers[{index}]", report)
            for index, item in enumerate(root.items("teams")):
                _apply_team(item, f"teams[{index}]", None, report)
    except (ValidationError, services.ServiceError) as exc:
        raise ConfigError(_validation_message(exc)) from None
    return report


def _validation_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "message_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    return str(exc)


def _apply_provider(data: Any, where: str, report: ApplyReport) -> None:
    item = _Reader(
        data,
        where,
        {"name", "kind", "base_url", "options", "active", "allow_private_network", "keys"},
    )
    name = item.get("name", str, required=True)
    fields = {
        "kind": item.get("kind", str, required=True),
        "base_url": item.get("base_url", str, required=True).rstrip("/"),
        "options": item.get("options", dict, {}),
        "is_active": item.get("active", bool, True),
        "allow_private_network": item.get("allow_private_network", bool, False),
    }
    provider = Provider.objects.filter(name=name).first()
    if provider is None:
        provider = services.provider_create(name=name, **fields)
        report.record("created", f"provider {name}")
    else:
        before = _snapshot_fields(provider, fields)
        services.provider_update(provider=provider, **fields)
        report.record("changed" if before != fields else "unchanged", f"provider {name}")
    for index, key in enumerate(item.items("keys")):
        _apply_provider_key(provider, key, f"{where}.keys[{index}]", report)


def _apply_provider_key(provider: Provider, data: Any, where: str, report: ApplyReport) -> None:
    item = _Reader(data, where, {"name", "api_key_env", "api_key", "weight", "active"})
    name = item.get("name", str, required=True)
    label = f"provider key {provider.name}/{name}"
    variable = item.get("api_key_env", str, "")
    literal = item.get("api_key", str)
    secret = _env_secret(variable, where) if variable else literal
    fields = {"weight": item.get("weight", int, 1), "is_active": item.get("active", bool, True)}
    key = ProviderKey.objects.filter(provider=provider, name=name).first()
    if key is None:
        if not secret:
            raise ConfigError(f"{where}: a new provider key needs 'api_key_env' (or 'api_key')")
        services.provider_key_create(
            provider=provider, name=name, secret=secret, secret_env=variable, **fields
        )
        report.record("created", label)
        return
    changed = _snapshot_fields(key, fields) != fields
    services.provider_key_update(key=key, **fields)
    if secret and (crypto.decrypt(key.encrypted_secret) != secret or key.secret_env != variable):
        services.provider_key_replace_secret(key=key, secret=secret, secret_env=variable)
        changed = True
    report.record("changed" if changed else "unchanged", label)


def _apply_route(data: Any, where: str, report: ApplyReport) -> None:
    item = _Reader(data, where, {"name", "provider", "model", "fallbacks", "active"})
    name = item.get("name", str, required=True)
    provider_name = item.get("provider", str, required=True)
    provider = Provider.objects.filter(name=provider_name).first()
    if provider is None:
        raise ConfigError(f"{where}.provider: no provider named {provider_name!r}")
    fields = {
        "provider": provider,
        "provider_model": item.get("model", str, required=True),
        "fallbacks": item.get("fallbacks", list, []),
        "is_active": item.get("active", bool, True),
    }
    route = ModelRoute.objects.filter(name=name).first()
    if route is None:
        services.model_route_create(name=name, **fields)
        report.record("created", f"route {name}")
    else:
        before = _snapshot_fields(route, fields)
        services.model_route_update(route=route, **fields)
        report.record("changed" if before != fields else "unchanged", f"route {name}")


def _apply_customer(data: Any, where: str, report: ApplyReport) -> None:
    item = _Reader(
        data,
        where,
        {"name", "description", "metadata", "cache_shared_across_teams", "teams", *POLICY_KEYS},
    )
    name = item.get("name", str, required=True)
    fields = {
        "description": item.get("description", str, ""),
        "metadata": item.get("metadata", dict, {}),
        "cache_shared_across_teams": item.get("cache_shared_across_teams", bool, False),
        **_policy_fields(item),
    }
    customer = Customer.objects.filter(name=name).first()
    if customer is None:
        customer = services.customer_create(name=name, **fields)
        report.record("created", f"customer {name}")
    else:
        before = _snapshot_fields(customer, fields)
        services.customer_update(customer=customer, **fields)
        report.record("changed" if before != fields else "unchanged", f"customer {name}")
    _apply_limits(customer, item, report)
    for index, team in enumerate(item.items("teams")):
        _apply_team(team, f"{where}.teams[{index}]", customer, report)


def _apply_team(data: Any, where: str, customer: Customer | None, report: ApplyReport) -> None:
    item = _Reader(
        data,
        where,
        {"name", "description", "metadata", "store_content", "virtual_keys", *POLICY_KEYS},
    )
    name = item.get("name", str, required=True)
    fields = {
        "customer": customer,
        "description": item.get("description", str, ""),
        "metadata": item.get("metadata", dict, {}),
        "store_content": item.get("store_content", bool, False),
        **_policy_fields(item),
    }
    team = Team.objects.filter(name=name).first()
    if team is None:
        team = services.team_create(name=name, **fields)
        report.record("created", f"team {name}")
    else:
        before = _snapshot_fields(team, fields)
        services.team_update(team=team, **fields)
        report.record("changed" if before != fields else "unchanged", f"team {name}")
    _apply_limits(team, item, report)
    for index, key in enumerate(item.items("virtual_keys")):
        _apply_virtual_key(team, key, f"{where}.virtual_keys[{index}]", report)


def _apply_virtual_key(team: Team, data: Any, where: str, report: ApplyReport) -> None:
    item = _Reader(
        data,
        where,
        {
            "name",
            "secret_env",
            "expires_at",
            "metadata",
            "active",
            "allowed_ips",
            "store_content",
            *POLICY_KEYS,
        },
    )
    name = item.get("name", str, required=True)
    label = f"virtual key {name}"
    variable = item.get("secret_env", str, "")
    secret = _env_secret(variable, where) if variable else None
    active = item.get("active", bool, True)
    fields = {
        "team": team,
        "expires_at": item.datetime("expires_at"),
        "metadata": item.get("metadata", dict, {}),
        "allowed_ips": item.get("allowed_ips", list, []),
        "store_content": _store_content_choice(item),
        **_policy_fields(item),
    }
    key = VirtualKey.objects.filter(team=team, name=name).first()
    if key is None:
        key, created_secret = services.virtual_key_create(
            name=name, secret=secret, secret_env=variable, **fields
        )
        if secret is None:
            report.new_secrets[name] = created_secret
        if not active:
            services.virtual_key_revoke(key=key)
        report.record("created", label)
        _apply_limits(key, item, report)
        return
    changed = _snapshot_fields(key, fields) != fields
    services.virtual_key_update(key=key, **fields)
    if secret is not None and (
        not tokens.hashes_match(secret, key.secret_hash) or key.secret_env != variable
    ):
        services.virtual_key_replace_secret(key=key, secret=secret, secret_env=variable)
        changed = True
    if key.is_active and not active:
        services.virtual_key_revoke(key=key)
        changed = True
    elif active and not key.is_active:
        raise ConfigError(f"{where}: the key {name} was revoked; revoked keys stay revoked")
    report.record("changed" if changed else "unchanged", label)
    _apply_limits(key, item, report)


def _store_content_choice(item: _Reader) -> str:
    """A key's ``store_content``: inherit, on or off.

    YAML 1.1 reads an unquoted ``on``/``off`` (and ``true``/``false``) as a
    boolean; those mean on and off.
    """
    value = item.get("store_content", (str, bool), StoreContent.INHERIT)
    if isinstance(value, bool):
        return StoreContent.ON if value else StoreContent.OFF
    if value not in StoreContent.values:
        allowed = ", ".join(StoreContent.values)
        raise ConfigError(f"{item.where}.store_content: {value!r} is not one of {allowed}")
    return value


# --- access rules, budgets and rate limits (any level of the org tree) ------------

POLICY_KEYS = {
    "allowed_models",
    "max_concurrent_requests",
    "cache_ttl_seconds",
    "budgets",
    "rate_limits",
    "guardrails",
}


def _policy_fields(item: _Reader) -> dict[str, Any]:
    models = item.get("allowed_models", list, [])
    if not all(isinstance(name, str) and name for name in models):
        raise ConfigError(f"{item.where}.allowed_models: a list of model names or patterns")
    return {
        "allowed_models": models,
        "max_concurrent_requests": item.get("max_concurrent_requests", int),
        "cache_ttl_seconds": item.get("cache_ttl_seconds", int),
    }


def _apply_limits(owner: Customer | Team | VirtualKey, item: _Reader, report: ApplyReport) -> None:
    """Make the owner's budgets and rate limits exactly the declared ones.

    A level without a ``budgets`` (``rate_limits``) entry keeps its own.
    """
    owner_label = f"{owner._meta.model_name} {owner.name}"
    scope = governance_services.scope_filter(owner)
    _apply_guardrails(owner, item, report)
    if "budgets" in item.data:
        existing = {(b.period, b.calendar_aligned): b for b in Budget.objects.filter(**scope)}
        for index, data in enumerate(item.items("budgets")):
            entry = _Reader(
                data,
                f"{item.where}.budgets[{index}]",
                {"amount", "period", "calendar_aligned", "anchor"},
            )
            period = entry.get("period", str, required=True)
            aligned = entry.get("calendar_aligned", bool, True)
            amount = _micros(entry.get("amount", (str, int, float), required=True), entry.where)
            label = f"budget {owner_label} {period}"
            budget = existing.pop((period, aligned), None)
            if budget is None:
                governance_services.budget_create(
                    owner=owner,
                    amount_micros=amount,
                    period=period,
                    calendar_aligned=aligned,
                    anchor=entry.datetime("anchor"),
                )
                report.record("created", label)
            else:
                changed = budget.amount_micros != amount
                governance_services.budget_update(budget=budget, amount_micros=amount)
                report.record("changed" if changed else "unchanged", label)
        for budget in existing.values():
            governance_services.budget_delete(budget=budget)
            report.record("changed", f"budget {owner_label} {budget.period} (removed)")
    if "rate_limits" in item.data:
        limits = {(r.metric, r.window_seconds): r for r in RateLimit.objects.filter(**scope)}
        for index, data in enumerate(item.items("rate_limits")):
            entry = _Reader(
                data, f"{item.where}.rate_limits[{index}]", {"metric", "limit", "window_seconds"}
            )
            metric = entry.get("metric", str, required=True)
            window = entry.get("window_seconds", int, 60)
            limit = entry.get("limit", int, required=True)
            label = f"rate limit {owner_label} {metric}/{window}s"
            rate_limit = limits.pop((metric, window), None)
            if rate_limit is None:
                governance_services.rate_limit_create(
                    owner=owner, metric=metric, limit=limit, window_seconds=window
                )
                report.record("created", label)
            else:
                changed = rate_limit.limit != limit
                governance_services.rate_limit_update(rate_limit=rate_limit, limit=limit)
                report.record("changed" if changed else "unchanged", label)
        for rate_limit in limits.values():
            governance_services.rate_limit_delete(rate_limit=rate_limit)
            report.record("changed", f"rate limit {owner_label} {rate_limit.metric} (removed)")


# A policy's fields in the file: the model's, with ``active`` for ``is_active``.
GUARDRAIL_KEYS = {"name", *RULE_FIELDS, "active"}


def _guardrail_scope(owner: Customer | Team | VirtualKey | None) -> dict[str, Any]:
    if owner is None:
        return {"customer": None, "team": None, "virtual_key": None}
    return governance_services.scope_filter(owner)


def _apply_guardrails(
    owner: Customer | Team | VirtualKey | None, item: _Reader, report: ApplyReport
) -> None:
    """Make the level's guardrail policies (global without an owner) exactly the
    declared ones, by name; a level without a ``guardrails`` entry keeps its own."""
    if "guardrails" not in item.data:
        return
    owner_label = f"{owner._meta.model_name} {owner.name}" if owner is not None else "global"
    existing = {p.name: p for p in GuardrailPolicy.objects.filter(**_guardrail_scope(owner))}
    for index, data in enumerate(item.items("guardrails")):
        entry = _Reader(data, f"{item.where}.guardrails[{index}]", GUARDRAIL_KEYS)
        name = entry.get("name", str, required=True)
        fields = {
            "direction": entry.get("direction", str, "both"),
            "detectors": entry.get("detectors", dict, {}),
            "deny_patterns": entry.get("deny_patterns", list, []),
            "allow_patterns": entry.get("allow_patterns", list, []),
            "max_input_tokens": entry.get("max_input_tokens", int),
            "max_messages": entry.get("max_messages", int),
            "is_active": entry.get("active", bool, True),
        }
        label = f"guardrail policy {owner_label} {name}"
        policy = existing.pop(name, None)
        if policy is None:
            governance_services.guardrail_policy_create(name=name, owner=owner, **fields)
            report.record("created", label)
        else:
            changed = _snapshot_fields(policy, fields) != fields
            governance_services.guardrail_policy_update(policy=policy, **fields)
            report.record("changed" if changed else "unchanged", label)
    for policy in existing.values():
        governance_services.guardrail_policy_delete(policy=policy)
        report.record("changed", f"guardrail policy {owner_label} {policy.name} (removed)")


def _export_guardrails(owner: Customer | Team | VirtualKey | None) -> dict[str, Any]:
    """The level's guardrail policies, when it has any."""
    policies = GuardrailPolicy.objects.filter(**_guardrail_scope(owner)).order_by("id")
    exported = [
        {
            "name": policy.name,
            **{name: getattr(policy, name) for name in RULE_FIELDS},
            "active": policy.is_active,
        }
        for policy in policies
    ]
    return {"guardrails": exported} if exported else {}


def _micros(amount: str | int | float, where: str) -> int:
    try:
        return governance_services.money_to_micros(amount)
    except (ArithmeticError, ValueError) as exc:
        raise ConfigError(f"{where}.amount: {exc}") from None


def _export_policy(owner: Customer | Team | VirtualKey) -> dict[str, Any]:
    scope = governance_services.scope_filter(owner)
    return {
        "allowed_models": owner.allowed_models,
        "max_concurrent_requests": owner.max_concurrent_requests,
        "cache_ttl_seconds": owner.cache_ttl_seconds,
        "budgets": [
            {
                "amount": governance_services.micros_to_money(budget.amount_micros),
                "period": budget.period,
                "calendar_aligned": budget.calendar_aligned,
                **({} if budget.calendar_aligned else {"anchor": budget.anchor.isoformat()}),
            }
            for budget in Budget.objects.filter(**scope).order_by("id")
        ],
        "rate_limits": [
            {"metric": r.metric, "limit": r.limit, "window_seconds": r.window_seconds}
            for r in RateLimit.objects.filter(**scope).order_by("id")
        ],
        **_export_guardrails(owner),
    }


def _snapshot_fields(instance: Any, fields: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in fields}


# --- exporting ------------------------------------------------------------------


def export_config() -> dict[str, Any]:
    """The current configuration as a document :func:`apply_config` accepts."""
    document: dict[str, Any] = {"version": FORMAT_VERSION}
    document["providers"] = [
        {
            "name": provider.name,
            "kind": provider.kind,
            "base_url": provider.base_url,
            **({"options": provider.options} if provider.options else {}),
            "active": provider.is_active,
            **({"allow_private_network": True} if provider.allow_private_network else {}),
            "keys": [_export_provider_key(key) for key in provider.keys.all()],
        }
        for provider in Provider.objects.prefetch_related("keys")
    ]
    document["routes"] = [
        {
            "name": route.name,
            "provider": route.provider.name,
            "model": route.provider_model,
            "fallbacks": route.fallbacks,
            "active": route.is_active,
        }
        for route in ModelRoute.objects.select_related("provider")
    ]
    document.update(_export_guardrails(None))
    teams = Team.objects.prefetch_related("virtual_keys").order_by("name")
    document["customers"] = [
        {
            "name": customer.name,
            "description": customer.description,
            "metadata": customer.metadata,
            "cache_shared_across_teams": customer.cache_shared_across_teams,
            **_export_policy(customer),
            "teams": [_export_team(team) for team in teams if team.customer_id == customer.pk],
        }
        for customer in Customer.objects.all()
    ]
    document["teams"] = [_export_team(team) for team in teams if team.customer_id is None]
    return document


def _export_provider_key(key: ProviderKey) -> dict[str, Any]:
    exported: dict[str, Any] = {"name": key.name}
    # A key typed into the console has no reference to export; applying the
    # export leaves its stored secret as it is.
    if key.secret_env:
        exported["api_key_env"] = key.secret_env
    exported.update({"weight": key.weight, "active": key.is_active})
    return exported


def _export_team(team: Team) -> dict[str, Any]:
    return {
        "name": team.name,
        "description": team.description,
        "metadata": team.metadata,
        "store_content": team.store_content,
        **_export_policy(team),
        "virtual_keys": [_export_virtual_key(key) for key in team.virtual_keys.all()],
    }


def _export_virtual_key(key: VirtualKey) -> dict[str, Any]:
    exported: dict[str, Any] = {"name": key.name}
    if key.secret_env:
        exported["secret_env"] = key.secret_env
    exported.update(
        {
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "metadata": key.metadata,
            "allowed_ips": key.allowed_ips,
            "store_content": key.store_content,
            "active": key.is_active,
            **_export_policy(key),
        }
    )
    return exported


def dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
