"""What the API shows and accepts for the org tree, keys, providers, routes and operators.

Field checks only: the services decide what a change means, the models
validate it (``full_clean``).
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from rest_framework import serializers

from keys.api.fields import ApiModelSerializer
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

TIMESTAMPS = ("created_at", "updated_at")
POLICY = ("allowed_models", "max_concurrent_requests", "cache_ttl_seconds")
MAX_GRACE = dt.timedelta(days=30)


class CustomerSerializer(ApiModelSerializer):
    class Meta:
        model = Customer
        fields = (
            "id",
            "name",
            "description",
            "metadata",
            *POLICY,
            "cache_shared_across_teams",
            *TIMESTAMPS,
        )
        create_only_fields = ("name",)


class TeamSerializer(ApiModelSerializer):
    class Meta:
        model = Team
        fields = (
            "id",
            "name",
            "customer",
            "description",
            "metadata",
            *POLICY,
            "store_content",
            *TIMESTAMPS,
        )
        create_only_fields = ("name",)


class VirtualKeySerializer(ApiModelSerializer):
    masked = serializers.CharField(read_only=True, help_text="the key's public form")
    keeps_content = serializers.BooleanField(
        read_only=True,
        help_text="whether requests with this key keep their message content: "
        "store_content, or the team's choice when it is inherit",
    )

    class Meta:
        model = VirtualKey
        fields = (
            "id",
            "name",
            "team",
            "masked",
            "prefix",
            "is_active",
            "revoked_at",
            "expires_at",
            "metadata",
            *POLICY,
            "allowed_ips",
            "may_pin_provider_keys",
            "store_content",
            "keeps_content",
            "previous_valid_until",
            *TIMESTAMPS,
        )
        read_only_fields = ("is_active",)
        create_only_fields = ("name",)
        extra_kwargs = {
            "store_content": {
                "error_messages": {
                    "invalid_choice": '"{input}" is not a choice: use inherit, on or off.',
                    "null": "Use inherit, on or off.",
                }
            }
        }


class VirtualKeySecretSerializer(VirtualKeySerializer):
    """A key just created or rotated, with its secret: shown this once, never again."""

    secret = serializers.CharField(read_only=True)

    class Meta(VirtualKeySerializer.Meta):
        fields = (*VirtualKeySerializer.Meta.fields, "secret")


class RotateSerializer(serializers.Serializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=int(MAX_GRACE.total_seconds()),
        default=24 * 3600,
        help_text="how long the current secret keeps working",
    )


class ProviderSerializer(ApiModelSerializer):
    class Meta:
        model = Provider
        fields = (
            "id",
            "name",
            "kind",
            "base_url",
            "options",
            "is_active",
            "allow_private_network",
            *TIMESTAMPS,
        )
        create_only_fields = ("name",)


class ProviderKeySerializer(ApiModelSerializer):
    """The secret is written, never read: only its last four characters come back."""

    secret = serializers.CharField(write_only=True, max_length=4096, trim_whitespace=False)

    class Meta:
        model = ProviderKey
        fields = (
            "id",
            "provider",
            "name",
            "secret",
            "last_four",
            "weight",
            "is_active",
            *TIMESTAMPS,
        )
        create_only_fields = ("provider", "name", "secret")

    fixed_field_hints = {
        "secret": (
            "A saved secret is replaced with POST /api/v1/provider-keys/{id}/replace-secret/."
        ),
    }


class ProviderKeySecretSerializer(serializers.Serializer):
    secret = serializers.CharField(write_only=True, max_length=4096, trim_whitespace=False)


class ModelRouteSerializer(ApiModelSerializer):
    class Meta:
        model = ModelRoute
        fields = (
            "id",
            "name",
            "provider",
            "provider_model",
            "fallbacks",
            "is_active",
            *TIMESTAMPS,
        )
        create_only_fields = ("name",)


class UsernameField(serializers.SlugRelatedField):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            slug_field=get_user_model().USERNAME_FIELD,
            queryset=get_user_model().objects.all(),
            **kwargs,
        )


class RoleAssignmentSerializer(ApiModelSerializer):
    user = UsernameField(help_text="the operator's username")

    class Meta:
        model = RoleAssignment
        fields = ("id", "user", "role", "team", *TIMESTAMPS)


class ApiTokenSerializer(ApiModelSerializer):
    user = UsernameField(
        required=False, help_text="the operator it acts as (default: the one creating it)"
    )
    masked = serializers.CharField(read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields = (
            "id",
            "name",
            "user",
            "masked",
            "prefix",
            "read_only",
            "expires_at",
            "is_active",
            "revoked_at",
            "last_used_at",
            *TIMESTAMPS,
        )


class ApiTokenSecretSerializer(ApiTokenSerializer):
    """A token just created, with its secret: shown this once, never again."""

    token = serializers.CharField(read_only=True)

    class Meta(ApiTokenSerializer.Meta):
        fields = (*ApiTokenSerializer.Meta.fields, "token")
