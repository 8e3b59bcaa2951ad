"""Every gateway process follows configuration changes without a restart."""

from __future__ import annotations

from keys import services
from keys.models import ModelRoute

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_a_new_route_is_served_after_the_change(demo):
    services.model_route_create(name="fresh-model", provider=demo.provider, provider_model="mock-fresh")
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


def test_a_second_worker_process_follows_too(demo, django_db_blocker):
    from tests.conftest import gateway_env
    from tests.processes import GatewayProcess

    second = GatewayProcess(gateway_env(), workers=2)
    try:
        demo.gateway.wait_for_revision(second.client.get("/readyz").json()["config_revision"])
        services.model_route_create(name="late-model", provider=demo.provider, provider_model="mock-late")
        demo.sync()
        import openai

        client = openai.OpenAI(base_url=f"{second.url}/v1", api_key=demo.key, max_retries=0)
        # Each request may land on either worker; all must know the new route.
        import time

        deadline = time.monotonic() + 10
        seen = 0
        while seen < 10 and time.monotonic() < deadline:
            try:
                client.chat.completions.create(model="late-model", **CHAT)
                seen += 1
            except openai.NotFoundError:
                time.sleep(0.1)
                seen = 0
        assert seen == 10
    finally:
        second.close()
