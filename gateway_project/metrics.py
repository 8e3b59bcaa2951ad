"""``/metrics``: Django's and the data plane's metrics in Prometheus' text format.

The data plane's come summed over every worker process of the server
(``proxy.metrics``); Django's (django-prometheus: the console, the API) are
those of the worker that answers.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from proxy.metrics import GatewayCollector

_gateway = CollectorRegistry(auto_describe=False)
_gateway.register(GatewayCollector())  # type: ignore[arg-type]


def _allowed(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read the metrics, else the refusal."""
    token = settings.GATEWAY_METRICS_TOKEN
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token):
            return None
        response = HttpResponse("a bearer token is required\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if settings.GATEWAY_METRICS_PUBLIC:
        return None
    return HttpResponse(
        "metrics are closed: set GATEWAY_METRICS_TOKEN (or GATEWAY_METRICS_PUBLIC=true)\n",
        status=403,
    )


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """Both sets of metrics; async, so it reads the data plane's totals on the
    event loop that updates them."""
    refusal = _allowed(request)
    if refusal is not None:
        return refusal
    body = generate_latest(REGISTRY) + generate_latest(_gateway)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
