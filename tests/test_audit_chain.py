"""``audit_verify`` finds an event altered, removed or re-hashed behind the database's back."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.chain import GENESIS_HASH, event_hash
from audit.maintenance import audit_maintenance
from audit.models import AuditEvent
from keys import services
from tests.audit_fixtures import manage


def record_events(count: int) -> list[AuditEvent]:
    for index in range(count):
        services.team_create(name=f"team-{index}")
    return list(AuditEvent.objects.order_by("sequence"))


def behind_the_databases_back(sql: str, params: tuple = ()) -> None:
    """Run SQL the triggers would refuse, as someone with the database's keys could."""
    with audit_maintenance(connection), connection.cursor() as cursor:
        cursor.execute(sql, params)


def verify() -> str:
    out = io.StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_an_untouched_chain_is_intact():
    events = record_events(3)
    assert events[0].previous_hash == GENESIS_HASH
    assert [e.previous_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert [e.sequence for e in events] == [1, 2, 3]
    assert f"3 events, chain intact; head #3 {events[-1].hash}" in verify()


@pytest.mark.django_db
def test_an_empty_trail_is_intact():
    assert "0 events, chain intact" in verify()


@pytest.mark.django_db
def test_an_altered_event_is_reported():
    record_events(3)
    behind_the_databases_back(
        "UPDATE audit_auditevent SET object_repr = 'innocent' WHERE sequence = 2"
    )
    with pytest.raises(CommandError, match=r"event #2: its hash does not match its content"):
        verify()


@pytest.mark.django_db
def test_an_altered_json_field_is_reported():
    events = record_events(2)
    assert events[1].after["name"] == "team-1"
    behind_the_databases_back(
        "UPDATE audit_auditevent SET after = %s WHERE sequence = 2",
        ('{"name": "someone-else"}',),
    )
    with pytest.raises(CommandError, match=r"event #2: its hash"):
        verify()


@pytest.mark.django_db
def test_an_altered_event_with_a_recomputed_hash_breaks_the_next_link():
    events = record_events(3)
    forged = events[1]
    forged.actor_name = "someone-else"
    behind_the_databases_back(
        "UPDATE audit_auditevent SET actor_name = %s, hash = %s WHERE sequence = 2",
        (forged.actor_name, event_hash(forged)),
    )
    with pytest.raises(CommandError, match=r"event #3: previous_hash does not match event #2"):
        verify()


@pytest.mark.django_db
def test_a_removed_event_is_reported():
    record_events(3)
    behind_the_databases_back("DELETE FROM audit_auditevent WHERE sequence = 2")
    with pytest.raises(CommandError, match=r"event #3: expected event #2 here"):
        verify()


@pytest.mark.django_db
def test_numbers_survive_the_database_round_trip_without_breaking_the_chain():
    # PostgreSQL's jsonb gives 1e100 back as an integer: the hash must not care.
    metadata = {"big": 1e100, "ratio": 0.1, "huge": 10**30, "zero": -0.0, "tiny": [1.5e-7]}
    services.team_create(name="numbers", metadata=metadata)
    assert "1 events, chain intact" in verify()


@pytest.mark.django_db(transaction=True)
def test_the_command_exits_non_zero_on_a_broken_chain():
    record_events(2)
    intact = manage("audit_verify")
    assert intact.returncode == 0, intact.stderr
    assert "2 events, chain intact" in intact.stdout
    behind_the_databases_back("UPDATE audit_auditevent SET action = 'noop' WHERE sequence = 1")
    broken = manage("audit_verify")
    assert broken.returncode != 0
    assert "chain broken at event #1" in broken.stderr
