"""Every gateway process follows configuration changes without a restart."""

from __future__ import annotations

import time

import openai
import pytest
from django.conf import settings

from keys import selectors, services
from keys.models import ModelRoute
from tests.conftest import gateway_env
from tests.processes import GatewayProcess

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_new_route_is_served_after_the_change(demo):
    services.model_route_create(
        name="fresh-model", provider=demo.provider, provider_model="mock-fresh"
    )
    demo.sync()
    completion = demo.openai().chat.completions.create(model="fresh-model", **CHAT)
    assert completion.model == "mock-fresh"


def test_a_disabled_route_stops_being_served(demo):
    services.model_route_update(route=ModelRoute.objects.get(name="gpt-4o-mini"), is_active=False)
    demo.sync()
    response = demo.gateway.client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", **CHAT},
        headers={"authorization": f"Bearer {demo.key}"},
    )
    assert response.status_code == 404


def served_everywhere(url: str, key: str, model: str, *, times: int, within: float) -> bool:
    """True once ``times`` requests in a row succeed (they spread over workers)."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
    deadline = time.monotonic() + within
    in_a_row = 0
    while time.monotonic() < deadline:
        try:
            client.chat.completions.create(model=model, **CHAT)
            in_a_row += 1
            if in_a_row == times:
                return True
        except openai.NotFoundError:
            in_a_row = 0
            time.sleep(0.05)
    return False


def test_every_worker_of_a_multi_worker_gateway_follows(demo):
    workers = GatewayProcess(gateway_env(), workers=2)
    try:
        services.model_route_create(
            name="late-model", provider=demo.provider, provider_model="mock-late"
        )
        assert served_everywhere(workers.url, demo.key, "late-model", times=20, within=10)
    finally:
        workers.close()


@pytest.mark.skipif(not settings.REDIS_URL, reason="cluster mode (REDIS_URL) only")
def test_in_cluster_mode_a_redis_notification_refreshes_at_once(demo):
    # The poll is an hour away: only the notification can bring the change.
    notified = GatewayProcess(gateway_env(GATEWAY_SNAPSHOT_POLL_SECONDS="3600"))
    try:
        notified.wait_for_revision(selectors.config_revision())
        services.model_route_create(
            name="pushed-model", provider=demo.provider, provider_model="mock-pushed"
        )
        notified.wait_for_revision(selectors.config_revision(), timeout=5)
        assert served_everywhere(notified.url, demo.key, "pushed-model", times=1, within=2)
    finally:
        notified.close()
