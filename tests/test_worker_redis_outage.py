"""A Celery worker (with beat) draining the usage stream through a Redis
outage: Redis (a server of the test's own, with an append-only file) is
stopped with records in the stream and started again; the same worker
process reconnects, and every record lands in the database once."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
import redis

from governance.ledger import stream_key
from governance.models import RequestRecord
from governance.tasks import GROUP
from tests.conftest import gateway_env
from tests.fault_helpers import start_worker, wait_for_records
from tests.processes import RedisServerProcess, stop
from tests.reliability_report import add_row


def push(client: redis.Redis, tag: str, start: int, count: int) -> None:
    for index in range(start, start + count):
        entry = {
            "request_id": f"{tag}{index:05d}",
            "client_request_id": f"{tag}-{index}",
            "time": time.time(),
            "status": 200,
        }
        client.xadd(stream_key(), {"r": orjson.dumps(entry)})


@pytest.mark.timeout(180)
def test_a_worker_reconnects_after_a_redis_outage_and_drains_every_record_once(
    transactional_db, tmp_path
):
    server = RedisServerProcess(tmp_path)
    client = redis.Redis.from_url(server.url)
    worker = start_worker(gateway_env(REDIS_URL=server.url))
    tag = uuid.uuid4().hex[:8]
    try:
        push(client, tag, 0, 100)
        assert wait_for_records(tag, 100, timeout=60) == 100
        # Records written while the worker is between drains, then Redis goes away.
        push(client, tag, 100, 100)
        server.stop()
        time.sleep(5)  # the worker's drains and beat fail meanwhile
        assert worker.poll() is None, "the worker exited during the outage"
        server.start()
        client = redis.Redis.from_url(server.url)
        push(client, tag, 200, 100)
        stored = wait_for_records(tag, 300, timeout=90)
        time.sleep(2)  # a duplicate, if there were one, would arrive late
        records = RequestRecord.objects.filter(client_request_id__startswith=f"{tag}-")
        assert stored == records.count() == 300
        assert records.values("request_id").distinct().count() == 300
        assert client.xpending(stream_key(), GROUP)["pending"] == 0
        assert worker.poll() is None
    finally:
        stop(worker)
        server.close()
    add_row(
        "Redis",
        "Redis of the Celery worker stopped for 5 s right after 100 records were added to the "
        "usage stream, "
        "then started again (append-only file)",
        requests=300,
        client_saw="(not involved) the same worker process reconnected and drained",
        lost="nothing, and no duplicate: 300 of 300 records stored once",
    )
