"""The REST endpoints of customers, teams, keys, providers, routes and operators.

Each view names the service calls of its writes; reading, scoping and
rights are the shared mixins' (``keys.api.viewsets``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Model
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from keys import services
from keys.api import serializers as s
from keys.api.viewsets import (
    CrudViewSet,
    ReadOnlyScopedViewSet,
    ServiceCreateMixin,
    ServiceDestroyMixin,
    ServiceUpdateMixin,
)
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


def _changes(data: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    # Create-only fields are read-only on updates; what is left is the service's.
    return {name: value for name, value in data.items() if name in allowed}


class CustomerViewSet(CrudViewSet):
    """Customers: the top of the org tree."""

    queryset = Customer.objects.all()
    serializer_class = s.CustomerSerializer
    filterset_fields = ("name",)
    ordering_fields = ("name", "created_at")

    def create_object(self, data: dict[str, Any]) -> Customer:
        return services.customer_create(**data)

    def update_object(self, instance: Customer, data: dict[str, Any]) -> Customer:
        return services.customer_update(
            customer=instance, **_changes(data, services.CUSTOMER_FIELDS)
        )

    def delete_object(self, instance: Customer) -> None:
        services.customer_delete(customer=instance)


class TeamViewSet(CrudViewSet):
    """Teams, optionally under a customer."""

    queryset = Team.objects.all()
    serializer_class = s.TeamSerializer
    filterset_fields = ("name", "customer")
    ordering_fields = ("name", "created_at")

    def create_object(self, data: dict[str, Any]) -> Team:
        return services.team_create(**data)

    def update_object(self, instance: Team, data: dict[str, Any]) -> Team:
        return services.team_update(team=instance, **_changes(data, services.TEAM_FIELDS))

    def delete_object(self, instance: Team) -> None:
        services.team_delete(team=instance)


class SecretOnceMixin:
    """Answers a creation (or rotation) with the new secret, which is never shown again."""

    secret_serializer_class: type[BaseSerializer]
    secret_actions = ("create", "rotate")

    def get_response_serializer(self, instance: Model) -> BaseSerializer:
        if self.action not in self.secret_actions:
            return self.get_serializer(instance)
        return self.secret_serializer_class(instance, context=self.get_serializer_context())


@extend_schema_view(create=extend_schema(responses={201: s.VirtualKeySecretSerializer}))
class VirtualKeyViewSet(
    SecretOnceMixin, ServiceCreateMixin, ServiceUpdateMixin, ReadOnlyScopedViewSet
):
    """Virtual keys: created with their secret shown once, rotated, revoked (never deleted)."""

    # The team is read for each key's effective content choice (keeps_content).
    queryset = VirtualKey.objects.select_related("team")
    serializer_class = s.VirtualKeySerializer
    secret_serializer_class = s.VirtualKeySecretSerializer
    filterset_fields = ("name", "team", "is_active")
    ordering_fields = ("name", "created_at", "expires_at")

    def owner_of(self, data: dict[str, Any]) -> Team:
        return data["team"]

    def create_object(self, data: dict[str, Any]) -> VirtualKey:
        key, secret = services.virtual_key_create(**data)
        key.secret = secret
        return key

    def update_object(self, instance: VirtualKey, data: dict[str, Any]) -> VirtualKey:
        return services.virtual_key_update(
            key=instance, **_changes(data, services.VIRTUAL_KEY_FIELDS)
        )

    @extend_schema(request=s.RotateSerializer, responses={200: s.VirtualKeySecretSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str | None = None) -> Response:
        """A new secret, shown once; the current one keeps working for ``grace_seconds``."""
        key = self.get_object()
        options = s.RotateSerializer(data=request.data)
        options.is_valid(raise_exception=True)
        grace = dt.timedelta(seconds=options.validated_data["grace_seconds"])
        key, secret = services.virtual_key_rotate(key=key, grace=grace)
        key.secret = secret
        return Response(self.get_response_serializer(key).data)

    @extend_schema(request=None, responses={200: s.VirtualKeySerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Stop accepting the key, at once and for good."""
        key = services.virtual_key_revoke(key=self.get_object())
        return Response(self.get_serializer(key).data)


class ProviderViewSet(CrudViewSet):
    """Providers: an upstream's wire format, address and options."""

    queryset = Provider.objects.all()
    serializer_class = s.ProviderSerializer
    filterset_fields = ("name", "kind", "is_active")
    ordering_fields = ("name", "created_at")

    def create_object(self, data: dict[str, Any]) -> Provider:
        return services.provider_create(**data)

    def update_object(self, instance: Provider, data: dict[str, Any]) -> Provider:
        return services.provider_update(
            provider=instance, **_changes(data, services.PROVIDER_FIELDS)
        )

    def delete_object(self, instance: Provider) -> None:
        services.provider_delete(provider=instance)


class ProviderKeyViewSet(CrudViewSet):
    """Provider API keys: the secret is written once and only its last four characters read."""

    queryset = ProviderKey.objects.select_related("provider")
    serializer_class = s.ProviderKeySerializer
    filterset_fields = ("provider", "name", "is_active")
    ordering_fields = ("name", "created_at", "weight")

    def create_object(self, data: dict[str, Any]) -> ProviderKey:
        return services.provider_key_create(**data)

    def update_object(self, instance: ProviderKey, data: dict[str, Any]) -> ProviderKey:
        return services.provider_key_update(
            key=instance, **_changes(data, services.PROVIDER_KEY_FIELDS)
        )

    def delete_object(self, instance: ProviderKey) -> None:
        services.provider_key_delete(key=instance)

    @extend_schema(request=s.ProviderKeySecretSerializer, responses={200: s.ProviderKeySerializer})
    @action(detail=True, methods=["post"], url_path="replace-secret")
    def replace_secret(self, request: Request, pk: str | None = None) -> Response:
        """Store a new secret for this key (the provider rotated it)."""
        key = self.get_object()
        body = s.ProviderKeySecretSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = services.provider_key_replace_secret(key=key, secret=body.validated_data["secret"])
        return Response(self.get_serializer(key).data)


class ModelRouteViewSet(CrudViewSet):
    """Routes: a public model name, the provider model serving it, and its fallbacks."""

    queryset = ModelRoute.objects.all()
    serializer_class = s.ModelRouteSerializer
    filterset_fields = ("name", "provider", "is_active")
    ordering_fields = ("name", "created_at")

    def create_object(self, data: dict[str, Any]) -> ModelRoute:
        return services.model_route_create(**data)

    def update_object(self, instance: ModelRoute, data: dict[str, Any]) -> ModelRoute:
        return services.model_route_update(route=instance, **_changes(data, services.ROUTE_FIELDS))

    def delete_object(self, instance: ModelRoute) -> None:
        services.model_route_delete(route=instance)


class RoleAssignmentViewSet(ServiceCreateMixin, ServiceDestroyMixin, ReadOnlyScopedViewSet):
    """Who holds which role (``keys.access``); given and taken away, not edited."""

    queryset = RoleAssignment.objects.select_related("user", "team")
    serializer_class = s.RoleAssignmentSerializer
    filterset_fields = ("role", "team")
    ordering_fields = ("created_at",)

    def create_object(self, data: dict[str, Any]) -> RoleAssignment:
        return services.role_assignment_create(**data)

    def delete_object(self, instance: RoleAssignment) -> None:
        services.role_assignment_delete(assignment=instance)


@extend_schema_view(create=extend_schema(responses={201: s.ApiTokenSecretSerializer}))
class ApiTokenViewSet(SecretOnceMixin, ServiceCreateMixin, ReadOnlyScopedViewSet):
    """Admin API tokens: created with the token shown once, then only revoked."""

    queryset = ApiToken.objects.select_related("user")
    serializer_class = s.ApiTokenSerializer
    secret_serializer_class = s.ApiTokenSecretSerializer
    filterset_fields = ("name", "read_only")
    ordering_fields = ("name", "created_at", "expires_at", "last_used_at")

    def create_object(self, data: dict[str, Any]) -> ApiToken:
        data.setdefault("user", self.request.user)
        token, secret = services.api_token_create(**data)
        token.token = secret
        return token

    @extend_schema(request=None, responses={200: s.ApiTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Stop accepting the token, at once and for good."""
        token = services.api_token_revoke(token=self.get_object())
        return Response(self.get_serializer(token).data)
