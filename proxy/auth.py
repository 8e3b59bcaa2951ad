"""Authenticating a request by its virtual key."""

from __future__ import annotations

import time

from keys import tokens
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


def _unknown() -> GatewayError:
    # One message for every kind of wrong key, so a prober learns nothing.
    return GatewayError(401, "Invalid virtual key.", code="invalid_api_key")


async def authenticate(headers: dict[bytes, bytes]) -> KeyEntry:
    """The caller's key, or a 401/403 :class:`GatewayError`."""
    token = presented_key(headers)
    if token is None:
        raise GatewayError(
            401,
            "Missing virtual key: send it as 'Authorization: Bearer sk-gw-…' or 'x-api-key'.",
            code="missing_api_key",
        )
    if not tokens.is_well_formed(token):
        raise _unknown()
    entry = await store.find_key(tokens.key_prefix(token))
    if entry is None or not tokens.hashes_match(token, entry.secret_hash):
        raise _unknown()
    if not entry.is_active:
        raise GatewayError(403, "This virtual key has been revoked.", code="key_revoked")
    if entry.expires_at is not None and entry.expires_at <= time.time():
        raise GatewayError(403, "This virtual key has expired.", code="key_expired")
    return entry
