"""Changes from several processes at once append to one unbroken chain."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.core.management import call_command

from audit.models import AuditEvent
from tests.conftest import gateway_env
from tests.processes import ROOT

WORKERS = 4
ROUNDS = 15

# One process: wait for the others, then create and update teams as fast as
# it can, each pair in one transaction (two events appended under one lock).
# "services" goes through keys.services; "bare" writes the rows itself and
# records the events directly, as a service that takes no other lock would
# (keys.services all update one revision row, which orders them anyway).
WORKER = """
import os, sys, time
from pathlib import Path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
import django
django.setup()
from django.db import transaction
from audit.context import system_actor
from audit.services import audit_event_record
from audit.snapshots import audit_snapshot
from keys import services
from keys.models import Team

worker, mode, rounds, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])


def services_pair(name):
    team = services.team_create(name=name)
    services.team_update(team=team, description="updated")


def bare_pair(name):
    team = Team.objects.create(name=name)
    audit_event_record(action="create", instance=team, before=None, after=audit_snapshot(team))
    before = audit_snapshot(team)
    team.description = "updated"
    team.save()
    audit_event_record(action="update", instance=team, before=before, after=audit_snapshot(team))


pair = services_pair if mode == "services" else bare_pair
(gate / f"ready-{worker}").touch()
while not (gate / "go").exists():
    time.sleep(0.01)
with system_actor(f"worker-{worker}"):
    for index in range(rounds):
        with transaction.atomic():
            pair(f"w{worker}-t{index}")
"""


def start_workers(gate, mode: str) -> list[subprocess.Popen]:
    env = {**os.environ, **gateway_env(LOG_LEVEL="ERROR")}
    return [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(worker), mode, str(ROUNDS), str(gate)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(WORKERS)
    ]


def release_when_ready(gate, workers: list[subprocess.Popen], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(list(gate.glob("ready-*"))) < len(workers):
        assert time.monotonic() < deadline, "the workers did not start"
        assert all(worker.poll() is None for worker in workers), "a worker died starting"
        time.sleep(0.05)
    (gate / "go").touch()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["services", "bare"])
def test_concurrent_writers_leave_one_unbroken_chain(tmp_path, mode):
    workers = start_workers(tmp_path, mode)
    try:
        release_when_ready(tmp_path, workers)
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr
    finally:
        for worker in workers:
            worker.kill()

    expected = WORKERS * ROUNDS * 2
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, expected + 1))
    assert Counter(e.actor_name for e in events) == {
        f"system:worker-{worker}": ROUNDS * 2 for worker in range(WORKERS)
    }
    # Each transaction's two events are adjacent: the lock is held until commit.
    for create, update in zip(events[::2], events[1::2], strict=True):
        assert (create.action, update.action) == ("create", "update")
        assert create.object_id == update.object_id
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    assert f"{expected} events, chain intact" in out.getvalue()
