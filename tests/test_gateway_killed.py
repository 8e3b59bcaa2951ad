"""A gateway killed with SIGKILL under load loses at most the usage records
of its last flush interval (``GATEWAY_LEDGER_FLUSH_SECONDS``): the bound the
documentation states, measured."""

from __future__ import annotations

import os
import signal
import time

from governance.models import RequestRecord
from keys import selectors
from tests.conftest import gateway_env
from tests.fault_helpers import Load, wait_for_records
from tests.processes import GatewayProcess
from tests.reliability_report import add_row

FLUSH_SECONDS = 0.5


def test_sigkill_loses_at_most_the_last_flush_interval_of_records(demo, celery_worker):
    gateway = GatewayProcess(gateway_env(GATEWAY_LEDGER_FLUSH_SECONDS=str(FLUSH_SECONDS)))
    try:
        gateway.wait_for_revision(selectors.config_revision())
        with Load(gateway.url, demo.key, concurrency=8, timeout=5) as load:
            load.wait_for(300)
            os.killpg(gateway.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            time.sleep(0.5)
        answered = [o for o in load.outcomes if o.status == 200 and o.ended <= killed]
        assert len(answered) >= 300
        # Records are written by the worker from what reached the stream (or
        # the database, embedded) before the kill; give them time to land.
        wait_for_records(load.tag, len(answered), timeout=10)
        stored = set(
            RequestRecord.objects.filter(client_request_id__startswith=load.tag).values_list(
                "client_request_id", flat=True
            )
        )
        lost = [o for o in answered if o.request_id not in stored]
        # Only answers of the last flush interval (and the batch being
        # written) can be missing.
        assert all(killed - o.ended <= FLUSH_SECONDS + 0.3 for o in lost), [
            round(killed - o.ended, 2) for o in lost
        ]
        add_row(
            "Crash",
            f"gateway killed with SIGKILL under load (flush interval {FLUSH_SECONDS:g} s)",
            requests=len([o for o in load.outcomes if o.ended - o.seconds <= killed]),
            client_saw=f"{len(answered)} answered before the kill; requests in flight "
            "lost their connection",
            lost=f"{len(lost)} usage records, all answered in the last "
            f"{max((killed - o.ended for o in lost), default=0):.2f} s "
            f"(bound: one flush interval, {FLUSH_SECONDS:g} s)",
        )
    finally:
        gateway.close()
