"""Authenticating a request by its virtual key."""

from __future__ import annotations

import time
from typing import Any

from gateway_project.fast_settings import settings
from keys import tokens
from proxy.auth_failures import failed_authentications
from proxy.errors import GatewayError
from proxy.snapshot import KeyEntry, store


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``x-api-key`` (Anthropic's SDK)."""
    authorization = headers.get(b"authorization")
    if authorization:
        scheme, _, value = authorization.partition(b" ")
        if scheme.lower() == b"bearer" and value.strip():
            return value.strip().decode("latin-1")
    api_key = headers.get(b"x-api-key")
    if api_key and api_key.strip():
        return api_key.strip().decode("latin-1")
    return None


def client_address(scope: dict[str, Any]) -> str | None:
    """The client's address as the server resolved it.

    Behind a load balancer, uvicorn replaces the peer by the address in
    ``X-Forwarded-For`` when the peer is one of ``--forwarded-allow-ips``
    (``FORWARDED_ALLOW_IPS``; default 127.0.0.1), reading the header from the
    right so that a client cannot choose its address by sending it.
    """
    peer = scope.get("client")
    return peer[0] if peer else None


_NO_HASH = "0" * 64


def _unknown() -> GatewayError:
    # One message for every kind of wrong key, so a prober learns nothing.
    return GatewayError(401, "Invalid virtual key.", code="invalid_api_key")


async def authenticate(headers: dict[bytes, bytes], scope: dict[str, Any]) -> KeyEntry:
    """The caller's key, or a 401/403 :class:`GatewayError` (429 for an
    address that sent too many invalid keys, ``proxy.auth_failures``).

    Without a key and with governance enforcement off, the request runs
    under the configured default team's policy.
    """
    token = presented_key(headers)
    if token is None:
        anonymous = store.current.anonymous
        if not settings.GATEWAY_ENFORCE_GOVERNANCE_HEADER and anonymous is not None:
            return anonymous
        raise GatewayError(
            401,
            "Missing virtual key: send it as 'Authorization: Bearer sk-gw-…' or 'x-api-key'.",
            code="missing_api_key",
        )
    address = client_address(scope)
    failed_authentications.check(address)
    if not tokens.is_well_formed(token):
        failed_authentications.failed(address)
        raise _unknown()
    entry = await store.find_key(tokens.key_prefix(token))
    # A hash compared whether or not the prefix is known: the time taken does
    # not tell a guesser which prefixes exist.
    if not tokens.hashes_match(token, entry.secret_hash if entry else _NO_HASH) or entry is None:
        failed_authentications.failed(address)
        raise _unknown()
    if not entry.is_active:
        raise GatewayError(403, "This virtual key has been revoked.", code="key_revoked")
    if entry.expires_at is not None and entry.expires_at <= time.time():
        raise GatewayError(403, "This virtual key has expired.", code="key_expired")
    if entry.allowed_networks and not entry.allows_address(client_address(scope)):
        raise GatewayError(
            403, "This virtual key may not be used from this address.", code="ip_not_allowed"
        )
    return entry
