"""Fills the audit context for each console, admin and API request.

Placed after ``AuthenticationMiddleware``. The request id comes from the
``X-Request-ID`` header when it looks like one (a proxy or the client set
it), otherwise a new one is made; either way it is echoed in the response
so that an operator can find the events of a request. The client address is
``REMOTE_ADDR``: the address of whoever connected, which behind a proxy is
the proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from audit.context import Actor, AuditContext, audit_context, new_request_id
from audit.models import ActorKind

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
USER_AGENT_MAX = 512


def request_actor(request: HttpRequest) -> Actor:
    """Who acts in ``request`` (looked up when a change is recorded).

    An authentication that is not the session's (an API token) names its
    actor by setting ``request.audit_actor``; otherwise the signed-in user.
    """
    actor = getattr(request, "audit_actor", None)
    if actor is not None:
        return actor
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return Actor(kind=ActorKind.USER, name="anonymous")
    return Actor(kind=ActorKind.USER, name=user.get_username(), id=user.pk)


def request_audit_context(request: HttpRequest) -> AuditContext:
    request_id = request.headers.get(REQUEST_ID_HEADER, "")
    if not _REQUEST_ID.match(request_id):
        request_id = new_request_id()
    return AuditContext(
        actor=partial(request_actor, request),
        request_id=request_id,
        client_ip=_client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
    )


def _client_ip(request: HttpRequest) -> str | None:
    try:
        return str(ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return None  # e.g. a Unix socket


@sync_and_async_middleware
def audit_context_middleware(
    get_response: Callable[[HttpRequest], Any],
) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            context = request_audit_context(request)
            with audit_context(context):
                response = await get_response(request)
            response.headers.setdefault(REQUEST_ID_HEADER, context.request_id)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        context = request_audit_context(request)
        with audit_context(context):
            response = get_response(request)
        response.headers.setdefault(REQUEST_ID_HEADER, context.request_id)
        return response

    return middleware
