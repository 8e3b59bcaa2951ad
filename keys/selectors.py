"""Reads of keys, providers and routes, shaped for the data plane's snapshot."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from keys import crypto
from keys.models import ConfigRevision, ModelRoute, Provider, ProviderKey, Team, VirtualKey


def config_revision() -> str | None:
    """The current configuration revision, or None before any change."""
    return ConfigRevision.objects.filter(id=1).values_list("revision", flat=True).first()


def _virtual_key_rows(queryset: Any) -> list[dict[str, Any]]:
    return list(
        queryset.values(
            "id",
            "name",
            "prefix",
            "secret_hash",
            "is_active",
            "expires_at",
            "team_id",
            "team__name",
            "team__customer_id",
            "team__customer__name",
            "allowed_ips",
            "previous_prefix",
            "previous_secret_hash",
            "previous_valid_until",
            "may_pin_provider_keys",
            "store_content",
            "team__store_content",
        )
    )


def virtual_key_row_by_prefix(prefix: str) -> dict[str, Any] | None:
    """One key's row, for a snapshot miss."""
    rows = _virtual_key_rows(
        VirtualKey.objects.filter(prefix=prefix) | VirtualKey.objects.filter(previous_prefix=prefix)
    )
    return rows[0] if rows else None


def snapshot_rows() -> dict[str, Any]:
    """Everything the data plane needs, read in a handful of queries.

    Provider keys are decrypted here: the data plane holds them in memory only.
    """
    revision = config_revision()
    providers = list(
        Provider.objects.values(
            "id", "name", "kind", "base_url", "options", "is_active", "allow_private_network"
        )
    )
    provider_keys = [
        {
            "id": key.id,
            "provider_id": key.provider_id,
            "name": key.name,
            "secret": crypto.decrypt(key.encrypted_secret),
            "weight": key.weight,
        }
        for key in ProviderKey.objects.filter(is_active=True).order_by("provider_id", "name")
    ]
    routes = list(
        ModelRoute.objects.filter(is_active=True).values(
            "name", "provider_id", "provider_model", "fallbacks"
        )
    )
    return {
        "default_team": (
            Team.objects.filter(name=settings.GATEWAY_DEFAULT_TEAM)
            .values("id", "name", "customer_id", "customer__name", "store_content")
            .first()
            if settings.GATEWAY_DEFAULT_TEAM
            else None
        ),
        "revision": revision,
        "virtual_keys": _virtual_key_rows(VirtualKey.objects.all()),
        "providers": providers,
        "provider_keys": provider_keys,
        "routes": routes,
    }
