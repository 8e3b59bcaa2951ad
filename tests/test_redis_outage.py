"""Redis stopped, or frozen, under load: the configured failure mode, never a
crash or a hung request, and no usage record lost (cluster mode)."""

from __future__ import annotations

import time

import pytest
import redis
from django.conf import settings

from governance import services as governance
from keys.models import VirtualKey
from tests.conftest import gateway_env
from tests.fault_helpers import Load, start_worker, wait_for_records
from tests.processes import GatewayProcess, RedisServerProcess, stop
from tests.reliability_report import add_row, statuses_text

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL, reason="Redis backs the limits in cluster mode only"
)

OUTAGE_SECONDS = 3.0


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServerProcess(tmp_path)
    yield server
    server.close()


def degraded(gateway: GatewayProcess) -> float:
    for line in gateway.client.get("/metrics").text.splitlines():
        if line.startswith("gateway_limits_degraded "):
            return float(line.split()[1])
    return 0.0


def counted_requests(client: redis.Redis, rule_id: int) -> int:
    keys = list(client.scan_iter(match=f"{settings.GATEWAY_REDIS_PREFIX}:rl:{rule_id}:*"))
    return sum(int(value or 0) for value in client.mget(keys)) if keys else 0


@pytest.mark.parametrize(
    ("mode", "fault"), [("closed", "stopped"), ("open", "stopped"), ("open", "frozen")]
)
def test_limits_follow_the_failure_mode_while_redis_is_away_and_no_record_is_lost(
    demo, own_redis, mode, fault
):
    key = VirtualKey.objects.get(name="platform-app")
    rule = governance.rate_limit_create(
        owner=key, metric="requests", limit=1_000_000, window_seconds=3600
    )
    demo.sync()
    gateway = GatewayProcess(
        gateway_env(
            REDIS_URL=own_redis.url,
            GATEWAY_REDIS_FAILURE_MODE=mode,
            GATEWAY_REDIS_TIMEOUT_SECONDS="0.2",
            GATEWAY_REDIS_RETRY_MAX_SECONDS="1",
        )
    )
    worker = None
    try:
        from keys import selectors

        gateway.wait_for_revision(selectors.config_revision())
        with Load(gateway.url, demo.key, concurrency=8) as load:
            load.wait_for(50)
            before = len(load.outcomes)
            assert load.statuses() == {200: before}
            if fault == "stopped":
                own_redis.stop()
            else:
                own_redis.freeze()
            time.sleep(1.0)
            during = len(load.outcomes)
            assert degraded(gateway) == 1
            time.sleep(OUTAGE_SECONDS - 1.0)
            if fault == "stopped":
                own_redis.start()
            else:
                own_redis.thaw()
            back = time.monotonic()
            after_outage = len(load.outcomes)
            time.sleep(3.0)
            recovered = len(load.outcomes)
            load.wait_for(50)
        assert gateway.process.poll() is None, "the gateway died"
        outcomes = load.outcomes
        statuses = load.statuses()
        outage = load.statuses(outcomes[during:after_outage])
        # No hung connection, no reset, nothing but answers and the refusal.
        assert not [o for o in outcomes if o.status == 0], [o for o in outcomes if o.status == 0][
            :3
        ]
        assert max(o.seconds for o in outcomes) < 5.0
        if mode == "closed":
            assert set(statuses) <= {200, 503}
            assert outage[503] > 0
            assert {o.code for o in outcomes if o.status == 503} == {"limits_unavailable"}
        else:
            assert statuses == {200: len(outcomes)}
        # Redis is used again, exactly, once it answers.
        assert load.statuses(outcomes[recovered:]) == {200: len(outcomes) - recovered}
        assert degraded(gateway) == 0
        recovery = load.first_success_after(back)
        assert recovery < 2.0
        # Every request answered has its usage record, through the stream.
        worker = start_worker(gateway_env(REDIS_URL=own_redis.url))
        assert wait_for_records(load.tag, len(outcomes)) == len(outcomes)
        # What was served was counted in Redis: exactly in closed mode (up to
        # the requests whose answer from Redis was lost in the cut), and in
        # open mode by the reconciliation of the locally counted ones.
        served = statuses[200]
        counted = counted_requests(redis.Redis.from_url(own_redis.url), rule.id)
        assert served <= counted <= served + load.concurrency
        add_row(
            "Redis",
            f"Redis {fault} for {OUTAGE_SECONDS:.0f} s under load, "
            f"GATEWAY_REDIS_FAILURE_MODE={mode}",
            requests=len(outcomes),
            client_saw=(
                f"{statuses_text(statuses)}; during the outage {statuses_text(outage)}"
                + ("; 503s are `limits_unavailable`" if mode == "closed" else "")
                + f"; slowest {max(o.seconds for o in outcomes):.2f} s"
                + f"; served again {recovery:.2f} s after Redis was back"
            ),
            lost=(
                f"nothing: {len(outcomes)} usage records; Redis counted {counted} "
                f"of {served} served"
            ),
        )
    finally:
        if worker is not None:
            stop(worker)
        gateway.close()


def test_what_open_mode_counted_locally_is_added_to_redis_and_slots_released(own_redis):
    """The backend itself, in this process, against the test's Redis server."""
    import asyncio

    from governance.limits import AdmissionPlan, CounterCheck, RedisLimits, SlotCheck
    from governance.outage import OutageAwareLimits

    async def scenario() -> tuple[int, int, int]:
        limits = OutageAwareLimits(
            RedisLimits.connect(own_redis.url, timeout=0.2), mode="open", max_pause=0.2
        )
        now = time.time()
        expires = int(now) + 3600

        def plan() -> AdmissionPlan:
            return AdmissionPlan(
                counters=[CounterCheck("t:rl", 100, 1, expires, "requests", "key 1")],
                slots=[SlotCheck("t:slots", 5, "key 1")],
            )

        first = plan()
        assert (await limits.admit(first, now)).admitted  # in Redis
        own_redis.stop()
        await limits.settle(first, {}, time.time())  # fails: journaled (slot release)
        local = [plan() for _ in range(3)]
        for item in local:
            assert (await limits.admit(item, time.time())).admitted
            await limits.settle(item, {}, time.time())
        assert limits.health.down
        own_redis.start()
        await asyncio.sleep(0.5)  # past the pause before the next try
        last = plan()
        assert (await limits.admit(last, time.time())).admitted
        await limits.settle(last, {}, time.time())
        if limits._reconciling is not None:
            await limits._reconciling
        raw = redis.Redis.from_url(own_redis.url)
        await limits.remote.aclose()
        return int(raw.get("t:rl")), raw.zcard("t:slots"), int(limits.health.down)

    counted, slots_held, down = asyncio.run(scenario())
    assert counted == 5  # 1 in Redis, 3 locally, 1 after recovery
    assert slots_held == 0  # the release that failed was made afterwards
    assert down == 0
