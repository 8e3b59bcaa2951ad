"""Budgets: reservations at admission, actual cost at settlement, never overspent."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import pytest
from django.conf import settings

from gateway_project.redis_client import redis_key, sync_client
from governance import services as governance
from governance.models import Budget
from keys.models import VirtualKey

# The mock answers 4 input tokens (1 word + 3 per message) and max_tokens output.
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
INPUT_PRICE, OUTPUT_PRICE = 1_000_000, 2_000_000  # micro-units per million tokens
REQUEST_COST = 4 * 1 + 16 * 2  # micro-units


@pytest.fixture
def priced(demo):
    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=INPUT_PRICE,
        output_micros_per_mtok=OUTPUT_PRICE,
    )
    return demo


def spent(budget: Budget) -> int:
    """The budget's live counter for its current period (cluster mode)."""
    start, _ = __import__("governance.periods", fromlist=["period_bounds"]).period_bounds(
        budget.period, time.time()
    )
    return int(sync_client().get(redis_key("budget", str(budget.id), str(start))) or 0)


def recorded_cost(team_id: int, requests: int, timeout: float = 20.0) -> int:
    """The sum of the ledger's costs for the team, once all ``requests`` are in."""
    from django.db.models import Sum

    from governance.models import RequestRecord

    deadline = time.monotonic() + timeout
    while RequestRecord.objects.filter(team_id=team_id).count() < requests:
        assert time.monotonic() < deadline, "the ledger did not receive every request"
        time.sleep(0.1)
    return RequestRecord.objects.filter(team_id=team_id).aggregate(s=Sum("cost_micros"))["s"] or 0


def test_an_exhausted_budget_answers_402_with_its_code(priced):
    governance.budget_create(owner=priced.team, amount_micros=REQUEST_COST * 40, period="1d")
    priced.sync()
    client = priced.openai()
    refused = None
    for _ in range(60):
        try:
            client.chat.completions.create(**CHAT)
        except openai.APIStatusError as error:
            refused = error
            break
    assert refused is not None and refused.status_code == 402
    assert refused.body["code"] == "budget_exceeded"


def test_successful_answers_say_how_much_budget_is_left(priced):
    governance.budget_create(
        owner=VirtualKey.objects.get(name="platform-app"), amount_micros=5_000_000, period="1M"
    )
    priced.sync()
    response = priced.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {priced.key}"}
    )
    assert response.status_code == 200
    remaining = float(response.headers["x-gateway-budget-remaining"])
    assert 4.99 < remaining < 5.0


async def _streams(url: str, key: str, count: int, disconnect_every: int) -> dict[str, int]:
    outcome = {"complete": 0, "refused": 0, "disconnected": 0}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=count)) as session:

        async def one(index: int) -> None:
            body = {**CHAT, "stream": True}
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            ) as response:
                if response.status != 200:
                    assert response.status == 402, await response.text()
                    outcome["refused"] += 1
                    await response.read()
                    return
                if disconnect_every and index % disconnect_every == 0:
                    await response.content.readline()
                    response.close()  # leave mid-stream
                    outcome["disconnected"] += 1
                    return
                data = await response.read()
                assert data.endswith(b"data: [DONE]\n\n")
                outcome["complete"] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return outcome


@pytest.mark.skipif(not settings.REDIS_URL, reason="reads the live counter in Redis")
def test_concurrent_streams_never_overspend_and_settle_to_the_actual_cost(priced, celery_worker):
    budget = governance.budget_create(
        owner=priced.team, amount_micros=REQUEST_COST * 50, period="1d"
    )
    priced.sync()
    priced.mock.add_rule(match={}, inter_token_ms=5)
    outcome = asyncio.run(_streams(priced.gateway.url, priced.key, 200, disconnect_every=0))
    assert outcome["complete"] + outcome["refused"] == 200
    assert outcome["complete"] >= 1
    assert spent(budget) == REQUEST_COST * outcome["complete"]
    assert spent(budget) <= budget.amount_micros
    assert recorded_cost(priced.team.id, outcome["complete"] + outcome["refused"]) == spent(budget)


@pytest.mark.skipif(not settings.REDIS_URL, reason="reads the live counter in Redis")
def test_streams_cut_off_by_their_clients_are_settled_within_the_budget(priced, celery_worker):
    budget = governance.budget_create(
        owner=priced.team, amount_micros=REQUEST_COST * 50, period="1d"
    )
    priced.sync()
    priced.mock.add_rule(match={}, inter_token_ms=20)
    total = {"complete": 0, "refused": 0, "disconnected": 0}
    for _ in range(3):
        outcome = asyncio.run(_streams(priced.gateway.url, priced.key, 200, disconnect_every=3))
        for name, value in outcome.items():
            total[name] += value
    time.sleep(0.5)  # settlement of the last disconnects
    assert total["disconnected"] > 0
    assert spent(budget) <= budget.amount_micros
    assert spent(budget) >= REQUEST_COST * total["complete"]
    # The budget's counter is exactly the sum of what the ledger recorded.
    assert recorded_cost(priced.team.id, sum(total.values())) == spent(budget)


def test_a_price_dated_in_the_future_takes_over_at_its_moment_without_a_reload(
    priced, celery_worker
):
    import datetime as dt

    from django.utils import timezone

    from governance.models import RequestRecord

    moment = timezone.now() + dt.timedelta(seconds=3)
    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=10 * INPUT_PRICE,
        output_micros_per_mtok=10 * OUTPUT_PRICE,
        effective_from=moment,
    )
    priced.sync()
    client = priced.gateway.client
    revision = client.get("/readyz").json()["config_revision"]

    def cost_of_one_request() -> int:
        response = client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {priced.key}"}
        )
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        deadline = time.monotonic() + 20
        while not RequestRecord.objects.filter(request_id=request_id).exists():
            assert time.monotonic() < deadline, "the request was not recorded"
            time.sleep(0.05)
        return RequestRecord.objects.get(request_id=request_id).cost_micros

    assert cost_of_one_request() == REQUEST_COST
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()) + 0.1)
    assert cost_of_one_request() == 10 * REQUEST_COST
    assert client.get("/readyz").json()["config_revision"] == revision
