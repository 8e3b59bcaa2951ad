"""The ASGI application: inference paths to Channels consumers, the rest to Django.

The inference paths never pass through Django's middleware stack; the
console, the admin, the REST API, ``/metrics`` and the probes do. The one
WebSocket is the console's live traffic feed, signed in by the Django
session.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from governance.live import LiveTrafficConsumer  # noqa: E402
from proxy import lifecycle  # noqa: E402
from proxy.endpoints import InferenceRouter  # noqa: E402

websocket_routes = URLRouter([path("console/live/ws", LiveTrafficConsumer.as_asgi())])

router = ProtocolTypeRouter(
    {
        "http": InferenceRouter(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(websocket_routes)),
    }
)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifecycle.lifespan(receive, send)
    else:
        await router(scope, receive, send)
