"""Bounded admission per provider: a provider's concurrency slots are held
by the requests in flight, a few more wait, and with dropExcessRequests the
rest are refused at once with 503 and Retry-After while the admitted ones
complete; without it they wait, up to the queue timeout."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.conftest import gateway_env
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def pooled(demo, **extra: str) -> GatewayProcess:
    server = GatewayProcess(
        gateway_env(GATEWAY_INITIAL_POOL_SIZE="2", GATEWAY_QUEUE_SIZE="2", **extra)
    )
    server.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
    return server


async def _burst(url: str, key: str, count: int, body: dict) -> list[tuple[int, float, dict]]:
    async with aiohttp.ClientSession() as session:

        async def one() -> tuple[int, float, dict]:
            started = time.monotonic()
            async with session.post(
                f"{url}/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {key}"},
            ) as response:
                await response.read()
                return response.status, time.monotonic() - started, dict(response.headers)

        return await asyncio.gather(*(one() for _ in range(count)))


def burst(url: str, key: str, count: int, body: dict = CHAT) -> list[tuple[int, float, dict]]:
    return asyncio.run(_burst(url, key, count, body))


@pytest.fixture
def dropping(demo):
    server = pooled(demo, GATEWAY_DROP_EXCESS_REQUESTS="true")
    yield server
    server.close()


def test_a_full_buffer_refuses_at_once_while_admitted_requests_complete(demo, dropping):
    demo.mock.add_rule(latency_ms=1000)
    results = burst(dropping.url, demo.key, 10)
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert len(served) == 4  # two in slots, two waiting behind them
    assert len(refused) == 6
    assert all(seconds < 0.5 for _, seconds, _ in refused)
    assert all(headers["Retry-After"] == "1" for _, _, headers in refused)
    # The waiting ones ran after the first two.
    assert sorted(seconds for _, seconds, _ in served)[-1] >= 1.9
    assert demo.mock.request_count() == 4
    metrics = dropping.client.get("/metrics").text
    assert 'gateway_provider_queue_drops_total{provider="mock",reason="buffer_full"} 6.0' in metrics
    assert 'gateway_provider_queue_depth{provider="mock"} 0.0' in metrics


def test_the_refusal_says_why_in_the_clients_envelope(demo, dropping):
    import openai

    demo.mock.add_rule(latency_ms=1000)
    results = burst(dropping.url, demo.key, 4)  # every slot and buffer place taken
    assert [status for status, _, _ in results] == [200] * 4

    async def crowd() -> None:
        loop = asyncio.get_running_loop()
        sdk = openai.OpenAI(base_url=f"{dropping.url}/v1", api_key=demo.key, max_retries=0)
        background = asyncio.ensure_future(_burst(dropping.url, demo.key, 4, CHAT))
        await asyncio.sleep(0.3)
        with pytest.raises(openai.InternalServerError) as caught:
            await loop.run_in_executor(None, lambda: sdk.chat.completions.create(**CHAT))
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "provider_overloaded"
        assert "'mock' is at capacity" in caught.value.body["message"]
        await background

    asyncio.run(crowd())


def test_a_full_provider_passes_requests_to_the_fallback(demo, dropping):
    from keys import services
    from keys.models import ModelRoute

    demo.mock.add_rule(match={"model": "mock-gpt"}, latency_ms=1000)
    backup = services.provider_create(
        name="backup", kind="openai", base_url=demo.mock.url + "/v1", allow_private_network=True
    )
    services.provider_key_create(provider=backup, name="primary", secret="sk-mock-backup-0001")
    services.model_route_update(
        route=ModelRoute.objects.get(name="gpt-4o-mini"), fallbacks=["backup/mock-gpt-mini"]
    )
    demo.sync()
    dropping.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
    results = burst(dropping.url, demo.key, 8)
    assert [status for status, _, _ in results].count(200) == 8
    served_by = sorted(headers["x-gateway-provider"] for _, _, headers in results)
    assert served_by.count("mock") == 4 and served_by.count("backup") == 4


def test_without_dropping_excess_requests_wait_their_turn(demo):
    server = pooled(demo, GATEWAY_QUEUE_TIMEOUT_SECONDS="10")
    try:
        demo.mock.add_rule(latency_ms=500)
        results = burst(server.url, demo.key, 8)
        assert [status for status, _, _ in results] == [200] * 8
        assert max(seconds for _, seconds, _ in results) >= 1.9  # four rounds of two
    finally:
        server.close()


def test_a_wait_longer_than_the_queue_timeout_is_a_503(demo):
    server = pooled(demo, GATEWAY_QUEUE_TIMEOUT_SECONDS="0.3")
    try:
        demo.mock.add_rule(latency_ms=1000)
        results = burst(server.url, demo.key, 4)
        assert sorted(status for status, _, _ in results) == [200, 200, 503, 503]
    finally:
        server.close()
