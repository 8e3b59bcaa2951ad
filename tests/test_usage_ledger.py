"""Every answered request lands in the usage ledger exactly once."""

from __future__ import annotations

import signal
import time
import uuid

import openai
import orjson
import pytest
from django.conf import settings
from django.utils import timezone

from governance import services as governance
from governance.ledger import stream_key
from governance.models import RequestRecord
from governance.tasks import GROUP, usage_drain
from tests.conftest import gateway_env
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def records(tag: str):
    return RequestRecord.objects.filter(client_request_id__startswith=tag)


def wait_for_records(tag: str, count: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    found = records(tag).count()
    while found < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = records(tag).count()
    return found


def send(gateway, key: str | None, tag: str, index: int, body: dict) -> int:
    headers = {"x-request-id": f"{tag}-{index}"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return gateway.client.post("/v1/chat/completions", json=body, headers=headers).status_code


def test_each_request_is_recorded_once_with_its_usage_and_cost(demo, celery_worker):
    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=1_000_000,
        output_micros_per_mtok=2_000_000,
    )
    demo.sync()
    tag = uuid.uuid4().hex[:8]
    statuses = [send(demo.gateway, demo.key, tag, i, CHAT) for i in range(5)]
    statuses.append(send(demo.gateway, None, tag, 5, CHAT))
    statuses.append(send(demo.gateway, demo.key, tag, 6, {**CHAT, "model": "nope"}))
    assert statuses == [200] * 5 + [401, 404]
    assert wait_for_records(tag, 7) == 7
    ok = records(tag).filter(status=200)
    assert ok.count() == 5
    record = ok.first()
    assert (record.input_tokens, record.output_tokens, record.cost_micros) == (4, 8, 4 + 16)
    assert record.provider == "mock" and record.served_model == "mock-gpt"
    assert record.requested_model == "gpt-4o-mini" and not record.usage_estimated
    assert record.key_id and record.team_id == demo.team.id
    assert record.upstream_ms is not None and record.latency_ms >= 0
    assert abs((record.time - timezone.now()).total_seconds()) < 60
    refused = records(tag).get(status=401)
    assert refused.error_code == "missing_api_key" and refused.key_id is None
    assert records(tag).get(status=404).error_code == "model_not_found"
    time.sleep(1.5)  # nothing arrives twice
    assert records(tag).count() == 7


def test_a_stream_is_recorded_with_its_usage_and_time_to_first_token(demo, celery_worker):
    tag = uuid.uuid4().hex[:8]
    client = openai.OpenAI(
        base_url=f"{demo.gateway.url}/v1",
        api_key=demo.key,
        max_retries=0,
        default_headers={"x-request-id": f"{tag}-stream"},
    )
    chunks = list(client.chat.completions.create(**CHAT, stream=True))
    assert chunks
    assert wait_for_records(tag, 1) == 1
    record = records(tag).get()
    assert record.stream and record.output_tokens == 8 and record.ttft_ms is not None


def test_sigterm_mid_load_loses_no_record(demo, celery_worker):
    import threading

    gateway = GatewayProcess(gateway_env(GATEWAY_LEDGER_FLUSH_SECONDS="30"))
    gateway.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
    tag = uuid.uuid4().hex[:8]
    answered: list[int] = []

    def load(worker: int) -> None:
        import httpx

        with httpx.Client(base_url=gateway.url, timeout=10) as client:
            for index in range(1000):
                try:
                    response = client.post(
                        "/v1/chat/completions",
                        json=CHAT,
                        headers={
                            "authorization": f"Bearer {demo.key}",
                            "x-request-id": f"{tag}-{worker}-{index}",
                        },
                    )
                except httpx.HTTPError:
                    return
                answered.append(response.status_code)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    # The flush interval is 30 s: only the shutdown flush can bring these in.
    gateway.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    # A drained gateway exits 0.
    assert gateway.process.wait(timeout=30) == 0
    gateway.close()
    assert len(answered) > 20
    assert wait_for_records(tag, len(answered)) == len(answered)


@pytest.mark.skipif(not settings.REDIS_URL, reason="the usage stream exists in cluster mode")
def test_a_worker_dying_mid_batch_neither_loses_nor_duplicates(transactional_db, settings):
    from gateway_project.redis_client import sync_client

    client = sync_client()
    key = stream_key()
    tag = uuid.uuid4().hex[:8]
    for index in range(30):
        entry = {
            "request_id": f"{tag}{index:04d}",
            "client_request_id": tag,
            "time": time.time(),
            "status": 200,
        }
        client.xadd(key, {"r": orjson.dumps(entry)})
    usage_drain(batch_size=1, max_batches=0)  # creates the group, stores nothing new
    # A worker reads a batch and dies before storing it...
    client.xreadgroup(GROUP, "dead-worker", {key: ">"}, count=10)
    # ...another stores a batch and dies before acknowledging it.
    messages = client.xreadgroup(GROUP, "dying-worker", {key: ">"}, count=10)[0][1]
    from governance.ledger import insert_records

    insert_records([orjson.loads(fields[b"r"]) for _, fields in messages])
    settings.GATEWAY_LEDGER_CLAIM_IDLE_MS = 0
    usage_drain(batch_size=100)
    assert records(tag).count() == 30
    assert client.xpending(key, GROUP)["pending"] == 0
