"""One error envelope for the whole REST API.

Every error answers ``{"error": {"code", "message", "fields"}}``: ``code`` is
a stable machine-readable word (``not_found``, ``permission_denied``,
``invalid`` ...), ``message`` a sentence for people, ``fields`` the messages
per input field of a validation error (empty otherwise). Errors of the
models (``full_clean``) and of the services (``keys.services.ServiceError``)
are 400s; objects still in use are 409s; anything unexpected is logged and
answered with a 500 in the same envelope, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.fields import get_error_detail
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from keys.services import ServiceError

logger = logging.getLogger(__name__)

NON_FIELD = "non_field_errors"


class Conflict(exceptions.APIException):
    """The change contradicts the current state (e.g. the object is still in use)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The change conflicts with the current state."
    default_code = "conflict"


def _as_api_exception(exc: Exception) -> exceptions.APIException | None:
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(detail=get_error_detail(exc))
    if isinstance(exc, ServiceError):
        return exceptions.ValidationError(detail={NON_FIELD: [str(exc)]})
    if isinstance(exc, ProtectedError | RestrictedError):
        users = sorted({str(obj) for obj in exc.args[1]})[:5]
        return Conflict(f"Still in use by {', '.join(users)}; remove those first.")
    if isinstance(exc, IntegrityError):
        return Conflict("The change conflicts with an existing object.")
    return None


def _code(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


def _validation_body(detail: Any) -> dict[str, Any]:
    if not isinstance(detail, dict):
        return {"code": "invalid", "message": " ".join(_messages(detail)), "fields": {}}
    fields = {name: value for name, value in detail.items() if name != NON_FIELD}
    general = _messages(detail.get(NON_FIELD, []))
    if general:
        message = " ".join(general)
    else:
        message = f"Invalid value for {', '.join(sorted(fields))}."
    return {"code": "invalid", "message": message, "fields": fields}


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope itself."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's ``EXCEPTION_HANDLER``: every error of the API in the one envelope."""
    api_exc = _as_api_exception(exc)
    if api_exc is None:
        logger.exception("unexpected error in %s", context.get("view").__class__.__name__)
        set_rollback()
        return Response(
            error_body("server_error", "The server could not complete the request."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    response = exception_handler(api_exc, context)
    assert response is not None  # DRF handles every APIException
    if isinstance(api_exc, exceptions.ValidationError):
        body = _validation_body(api_exc.detail)
    else:
        body = {"code": _code(api_exc), "message": " ".join(_messages(api_exc.detail))}
        body["fields"] = {}
    response.data = {"error": body}
    return response


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def api_not_found(request: Request, *args: Any, **kwargs: Any) -> Response:
    """Any other address under ``/api/``: a 404 in the envelope, not Django's page."""
    if not request.path.endswith("/"):
        raise exceptions.NotFound("No such endpoint; the API's addresses end in a slash.")
    raise exceptions.NotFound("No such endpoint.")
