"""Liveness and readiness probes."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from proxy import drain
from proxy.snapshot import store


def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: configuration loaded and not draining (a process
    draining for shutdown answers 503).

    The database and Redis are checked and reported, but a process that has
    its snapshot keeps serving through their outages (usage records wait in
    its buffer or the stream; limits follow GATEWAY_REDIS_FAILURE_MODE):
    failing readiness for them would take every replica out of service at
    once for what is a shared, temporary fault.
    """
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    if settings.REDIS_URL:
        from gateway_project.redis_client import sync_client

        try:
            sync_client().ping()
            checks["redis"] = "ok"
        except Exception:
            checks["redis"] = "unavailable"
    checks["config"] = "ok" if store.loaded else "loading"
    if drain.state.draining:
        checks["process"] = "draining"
    ready = checks["config"] == "ok" and "process" not in checks
    return JsonResponse(
        {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "config_revision": store.current.revision,
        },
        status=200 if ready else 503,
    )
