"""Views that read through ``keys.access`` and write through the services.

A view names its service calls (``create_object``, ``update_object``,
``delete_object``); the mixins here do the rest: validate the input with
the serializer (field checks only, no business logic), check the
operator's rights, call the service and answer with the stored object.
Model validation errors and ``ServiceError`` become 400s in the error
envelope (``keys.api.errors``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from keys.access import request_access
from keys.api.permissions import OperatorPermission


class ScopedViewSet(viewsets.GenericViewSet):
    """Lists and reads only the rows the operator may see (``Access.scope``)."""

    permission_classes = [OperatorPermission]

    def get_queryset(self) -> QuerySet:
        return request_access(self.request).scope(super().get_queryset())

    def get_response_serializer(self, instance: Model) -> BaseSerializer:
        """How a created or changed object is answered (the secret-once views differ)."""
        return self.get_serializer(instance)


class ReadOnlyScopedViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """List and retrieve, nothing else."""


class ServiceCreateMixin:
    """``POST``: validate, check ``can_create`` for the new object's owner, call the service."""

    def owner_of(self, data: dict[str, Any]) -> Model | None:
        """The team or key the new object attaches to (``keys.access.Access.can_create``)."""
        return None

    def create_object(self, data: dict[str, Any]) -> Model:
        raise NotImplementedError

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        model = self.get_queryset().model
        if not request_access(request).can_create(model, owner=self.owner_of(data)):
            raise PermissionDenied("Your role does not allow creating this here.")
        instance = self.create_object(data)
        return Response(self.get_response_serializer(instance).data, status=status.HTTP_201_CREATED)


class ServiceUpdateMixin:
    """``PUT`` and ``PATCH``: the given fields go to the update service."""

    def update_object(self, instance: Model, data: dict[str, Any]) -> Model:
        raise NotImplementedError

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        partial = kwargs.get("partial", False)
        serializer = self.get_serializer(instance, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        instance = self.update_object(instance, dict(serializer.validated_data))
        return Response(self.get_response_serializer(instance).data)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)


class ServiceDestroyMixin:
    """``DELETE``: the delete service (an object still in use is a 409)."""

    def delete_object(self, instance: Model) -> None:
        raise NotImplementedError

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.delete_object(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class CrudViewSet(
    ServiceCreateMixin, ServiceUpdateMixin, ServiceDestroyMixin, ReadOnlyScopedViewSet
):
    """List, retrieve, create, update, partial update and delete."""
