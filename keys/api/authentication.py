"""Admin API tokens as DRF authentication: ``Authorization: Bearer gw-api-…``.

A token is found by its public prefix and its hash compared in constant
time, like a virtual key (``keys.tokens``). Revoked and expired tokens, and
tokens of deactivated users, are refused. Changes made with a token are
attributed in the audit trail to the token (``audit.models.ActorKind``),
named after the token and its user.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from audit.context import Actor
from audit.models import ActorKind
from keys import tokens
from keys.models import ApiToken

# ``last_used_at`` is written at most this often per token, not on every call.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
KEYWORD = "Bearer"


def token_actor(token: ApiToken) -> Actor:
    """How the audit trail names changes made with ``token``."""
    return Actor(
        kind=ActorKind.API_TOKEN,
        name=f"{token.user.get_username()} (token {token.name})",
        id=token.pk,
    )


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """Authenticates ``Authorization: Bearer <API token>`` as the token's user."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None  # not ours: the session may still authenticate
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Give the token as 'Bearer <token>'.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid API token.") from None
        token = self._token(secret)
        now = timezone.now()
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API token has been revoked.")
        if token.expires_at is not None and token.expires_at <= now:
            raise exceptions.AuthenticationFailed("This API token has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The user of this API token is inactive.")
        self._touch(token, now)
        # Read by the audit context (``audit.middleware.request_actor``).
        request._request.audit_actor = token_actor(token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403.
        return f'{KEYWORD} realm="api"'

    @staticmethod
    def _token(secret: str) -> ApiToken:
        if not tokens.is_well_formed(secret, tokens.API_TOKEN_SCHEME):
            raise exceptions.AuthenticationFailed("Invalid API token.")
        prefix = tokens.key_prefix(secret, tokens.API_TOKEN_SCHEME)
        token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
        if token is None or not tokens.hashes_match(secret, token.secret_hash):
            raise exceptions.AuthenticationFailed("Invalid API token.")
        return token

    @staticmethod
    def _touch(token: ApiToken, now: dt.datetime) -> None:
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
            # Bookkeeping, not an administrative change: no service, no audit event.
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes the token in the OpenAPI schema (registered by being defined)."""

    target_class = ApiTokenAuthentication
    name = "ApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An admin API token (gw-api-…), created under /api/v1/api-tokens/.",
        }
