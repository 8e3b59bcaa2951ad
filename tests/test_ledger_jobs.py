"""The periodic jobs on schedule, as deployed: rollups and budget-period closing.

Cluster mode: a real Celery worker and a real Celery beat, as two processes
against Redis (beat schedules from the settings, the worker drains the
usage stream and runs the jobs). Embedded mode: the gateway process runs
the same schedule itself, with no broker. Requests go through a real
gateway to the mock provider with the OpenAI SDK.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import openai
import pytest
from django.conf import settings
from django.utils import timezone

from governance import services as governance
from governance.models import BudgetPeriodHistory, RequestRecord, UsageRollup
from keys import selectors as key_selectors
from tests.conftest import gateway_env
from tests.ledger_helpers import expected_rows, new_tag, stored_rows
from tests.processes import ROOT, GatewayProcess, stop

FAST_SCHEDULE = {
    "GATEWAY_ROLLUP_INTERVAL_SECONDS": "0.5",
    "GATEWAY_BUDGET_CLOSE_INTERVAL_SECONDS": "0.5",
    "GATEWAY_BUDGET_CLOSE_DELAY_SECONDS": "2",
}
REQUESTS = 12


def celery(*arguments: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "gateway_project", *arguments, "-l", "WARNING"],
        cwd=ROOT,
        env={**os.environ, **gateway_env(**FAST_SCHEDULE)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def scheduled(demo) -> Iterator[GatewayProcess]:
    """A gateway with the fast schedule; in cluster mode a worker and a beat beside it."""
    gateway = GatewayProcess(gateway_env(**FAST_SCHEDULE))
    processes = []
    if settings.REDIS_URL:
        schedule_file = ROOT / "var" / f"celerybeat-{uuid.uuid4().hex[:6]}"
        processes = [
            celery("worker", "--pool", "solo", "--concurrency", "1"),
            celery("beat", "-s", str(schedule_file)),
        ]
    try:
        yield gateway
    finally:
        for process in processes:
            stop(process)
        gateway.close()


def wait_until(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(200)
def test_scheduled_rollups_equal_the_records_and_a_finished_period_is_closed(demo, scheduled):
    governance.model_price_set(
        provider_kind="openai",
        model="mock-gpt",
        input_micros_per_mtok=1_000_000,
        output_micros_per_mtok=2_000_000,
    )
    budget = governance.budget_create(owner=demo.team, amount_micros=10**9, period="1m")
    scheduled.wait_for_revision(key_selectors.config_revision())
    client = openai.OpenAI(
        base_url=f"{scheduled.url}/v1", api_key=demo.key, max_retries=0, timeout=20
    )
    # Every request in one budget period (one minute): not too close to its end.
    if timezone.now().second >= 45:
        time.sleep(60.2 - timezone.now().second)
    started = timezone.now()
    tags = [new_tag() for _ in range(REQUESTS)]
    for tag in tags:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=8,
            extra_headers={"x-request-id": tag},
        )
    records = RequestRecord.objects.filter(client_request_id__in=tags)
    wait_until(lambda: records.count() == REQUESTS, 30, "every usage record")

    # The schedule rolls them up: the rollups equal a recomputation from the records.
    def rolled_up() -> bool:
        hours = stored_rows("hour")
        return hours == expected_rows("hour") and stored_rows("day") == expected_rows("day")

    try:
        wait_until(rolled_up, 30, "rollups equal to the records")
    except AssertionError:
        assert stored_rows("hour") == expected_rows("hour")  # shows the difference
        raise
    assert sum(r.requests for r in UsageRollup.objects.filter(granularity="hour")) >= REQUESTS

    # The minute ends; two seconds later the schedule closes it and reconciles.
    period_start = started.replace(second=0, microsecond=0)
    history = wait_until(
        lambda: BudgetPeriodHistory.objects.filter(
            budget=budget, period_start=period_start
        ).first(),
        90,
        "the closing of the budget's period",
    )
    spent = sum(records.values_list("cost_micros", flat=True))
    assert spent > 0
    assert (history.spent_micros, history.requests) == (spent, REQUESTS)
    assert (history.counter_micros, history.reconciliation) == (spent, "matched")
