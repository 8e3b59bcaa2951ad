"""The roles of ``keys.access`` as a DRF permission, the same rules as the console's.

A kind the operator may not read at all is a 403; rows they may not see are
filtered out by the view's queryset (``Access.scope``), so another team's
object is a 404; a write to a kind they may not change (viewers, auditors,
read-only tokens) is a 403, and so is a change of an object they see but
may not change.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from rest_framework import permissions
from rest_framework.request import Request

from keys.access import request_access


def view_model(view: Any) -> type[Model]:
    return view.get_queryset().model if view.queryset is None else view.queryset.model


class OperatorPermission(permissions.BasePermission):
    """Admits operators to the kinds ``keys.access`` lets them read or change."""

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # DRF answers 401: not authenticated
        access = request_access(request)
        model = view_model(view)
        if not access.can_view(model):
            return False
        return request.method in permissions.SAFE_METHODS or access.can_write(model)

    def has_object_permission(self, request: Request, view: Any, obj: Model) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return True
        return request_access(request).can_change(obj)
