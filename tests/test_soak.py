"""The soak: a fixed rate for a long time, half the requests streamed,
governance on (a rate limit, a token limit and a budget on the key, all far
above the load): zero errors, flat memory, one usage record per request.

Runs only when ``GATEWAY_SOAK_SECONDS`` is set (``make reliability
RELIABILITY_ARGS="--soak 600"``); ``GATEWAY_SOAK_RATE`` is the rate
(requests a second, default 1,000).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from governance import services as governance
from governance.models import RequestRecord
from keys import selectors
from keys.models import VirtualKey
from scripts.bench import Pinning, Wrk, chat_body, ensure_wrk
from tests.conftest import gateway_env
from tests.fault_helpers import wait_for_count
from tests.processes import GatewayProcess
from tests.reliability_report import add_row, statuses_text
from tests.test_metrics import scrape

SECONDS = float(os.environ.get("GATEWAY_SOAK_SECONDS", "0"))
CONNECTIONS = 64  # per wrk process: room for a slow second without missing a send slot
RATE = int(os.environ.get("GATEWAY_SOAK_RATE", "1000"))

pytestmark = pytest.mark.skipif(not SECONDS, reason="the soak runs with GATEWAY_SOAK_SECONDS")


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the workers), in KiB."""
    total = 0
    for candidate in [pid, *children(pid)]:
        try:
            with open(f"/proc/{candidate}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except FileNotFoundError:
        return []


def offer(url: str, key: str, seconds: float, rate: int, state: Path) -> list[dict]:
    """Open loop, with the benchmark's wrk and its fixed-rate schedule: two
    wrk processes at the same time, each at half the rate, one sending plain
    and one streamed chat completions. Their summaries, plain first."""
    wrk = Wrk(ensure_wrk(), Pinning(False), state, "")
    summaries: list[dict] = [{}, {}]

    def one(index: int) -> None:
        summaries[index] = wrk.run(
            url,
            body=chat_body("gpt-4o-mini", stream=bool(index)),
            key=key,
            duration=seconds,
            rate=rate // 2,
            connections=CONNECTIONS,
        )

    threads = [threading.Thread(target=one, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summaries


def answered_by_gateway(client) -> Counter:
    """What the gateway counted as answered (``gateway_requests_total``), by status."""
    counted: Counter = Counter()
    for labels, value in scrape(client).get("gateway_requests_total", {}).items():
        labels = dict(labels)
        if labels.get("team") == "platform":
            counted[labels["status"]] += round(value)
    return counted


@pytest.mark.timeout(SECONDS * 2 + 300)
def test_a_long_run_at_a_fixed_rate_has_no_error_flat_memory_and_every_record(
    demo, celery_worker, tmp_path
):
    key = VirtualKey.objects.get(name="platform-app")
    limit = RATE * int(SECONDS) * 10
    governance.rate_limit_create(owner=key, metric="requests", limit=limit, window_seconds=3600)
    governance.rate_limit_create(
        owner=key, metric="tokens", limit=limit * 1000, window_seconds=3600
    )
    governance.budget_create(owner=key.team, amount_micros=10**12, period="1d")
    demo.sync()
    gateway = GatewayProcess(gateway_env(GATEWAY_ENABLE_LOGGING="false"), workers=1)
    try:
        gateway.wait_for_revision(selectors.config_revision())
        memory: list[tuple[float, int]] = []
        sampling = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            while not sampling.wait(5):
                memory.append((time.monotonic() - started, rss_kib(gateway.process.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            plain, streamed = offer(gateway.url, demo.key, SECONDS, RATE, tmp_path)
        finally:
            sampling.set()
            sampler.join()
        completed = plain["requests"] + streamed["requests"]
        non2xx = plain["non2xx"] + streamed["non2xx"]
        socket_errors = plain["socket_errors"] + streamed["socket_errors"]
        errors = non2xx + socket_errors
        # wrk stops with requests in flight, uncounted; the gateway answered
        # (and recorded) those too: its own counter is what the records match.
        by_status = answered_by_gateway(gateway.client)
        answered = sum(by_status.values())
        stored = wait_for_count(RequestRecord.objects.filter(key_id=key.pk), answered, 120)
        # Memory after the warm-up (first tenth) against the end.
        warm = [kib for at, kib in memory if at >= SECONDS / 10] or [memory[-1][1]]
        growth = (warm[-1] - warm[0]) / warm[0]
        add_row(
            "Soak",
            f"{SECONDS:.0f} s at {RATE}/s offered (wrk, fixed schedule), half streamed, "
            "governance on (requests and tokens limits, a budget)",
            requests=completed,
            client_saw=f"{completed - non2xx} 2xx, {non2xx} non-2xx, {socket_errors} socket "
            "errors or timeouts (10 s); "
            f"achieved {plain['rps'] + streamed['rps']:.0f}/s; p99 {plain['p99_ms']:.0f} ms "
            f"plain, {streamed['p99_ms']:.0f} ms streamed; RSS {warm[0] // 1024}→"
            f"{warm[-1] // 1024} MiB after warm-up ({growth:+.1%}); the gateway's statuses: "
            f"{statuses_text(by_status)}",
            lost=f"{answered - stored} of {answered} usage records (the gateway's count of "
            f"answers; {answered - completed} were in flight when wrk stopped)",
        )
        assert errors == 0, (plain, streamed)
        assert stored == answered
        assert 0 <= answered - completed <= 2 * CONNECTIONS
        assert growth < 0.2
    finally:
        gateway.close()
