"""The ASGI application: inference paths to Channels consumers, the rest to Django.

The inference paths never pass through Django's middleware stack; the
console, the admin, the REST API, ``/metrics`` and the probes do.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs Django set up)

from proxy import lifecycle  # noqa: E402
from proxy.endpoints import InferenceRouter  # noqa: E402

router = ProtocolTypeRouter({"http": InferenceRouter(django_asgi_app)})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifecycle.lifespan(receive, send)
    else:
        await router(scope, receive, send)
