"""No client, raw SQL included, can change or remove an audit event; flush still works."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import DatabaseError, connection, connections, transaction

from audit.maintenance import audit_maintenance
from audit.models import AppendOnlyError, AuditEvent
from keys import services
from keys.models import Team

on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


def recorded_event() -> AuditEvent:
    services.team_create(name="ops")
    return AuditEvent.objects.latest("sequence")


def raw(sql: str, params: tuple = ()) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_raw_sql_cannot_update_an_event():
    event = recorded_event()
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE audit_auditevent SET action = 'forged' WHERE id = %s", (event.pk,))
    event.refresh_from_db()
    assert event.action == "create"


@pytest.mark.django_db
def test_raw_sql_cannot_delete_an_event():
    event = recorded_event()
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM audit_auditevent WHERE id = %s", (event.pk,))
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM audit_auditevent")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@on_postgresql
@pytest.mark.django_db
def test_raw_sql_cannot_truncate_the_table():
    event = recorded_event()
    with pytest.raises(DatabaseError, match="append-only"):
        raw("TRUNCATE audit_auditevent")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_the_model_refuses_to_change_or_delete_an_event():
    event = recorded_event()
    event.action = "forged"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.bulk_create([AuditEvent(sequence=99)])
    assert AuditEvent.objects.get(pk=event.pk).action == "create"


class Boom(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_maintenance_mode_ends_with_its_transaction():
    event = recorded_event()
    with audit_maintenance(connection):
        raw("UPDATE audit_auditevent SET action = 'fixed' WHERE id = %s", (event.pk,))
    with pytest.raises(Boom), audit_maintenance(connection):
        raise Boom
    with pytest.raises(DatabaseError, match="append-only"):
        raw("UPDATE audit_auditevent SET action = 'again' WHERE id = %s", (event.pk,))
    assert AuditEvent.objects.get(pk=event.pk).action == "fixed"


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_maintenance_mode_is_invisible_to_other_sessions_on_postgresql():
    event = recorded_event()
    other = connections.create_connection("default")
    try:
        with audit_maintenance(connection):
            with pytest.raises(DatabaseError, match="append-only"), other.cursor() as cursor:
                cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", (event.pk,))
    finally:
        other.close()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")
@pytest.mark.django_db(transaction=True)
def test_maintenance_mode_is_invisible_to_other_connections_on_sqlite():
    other = connections.create_connection("default")
    try:
        with audit_maintenance(connection), other.cursor() as cursor:
            cursor.execute("SELECT enabled FROM audit_maintenance")
            assert cursor.fetchall() == [(0,)]
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_flush_without_maintenance_mode_is_refused_as_a_whole():
    recorded_event()
    with pytest.raises(DatabaseError, match="append-only"):
        connection.ops.execute_sql_flush(sql_flush(no_style(), connection))
    assert AuditEvent.objects.exists()
    assert Team.objects.filter(name="ops").exists()


@pytest.mark.django_db(transaction=True)
def test_the_flush_command_empties_the_audit_trail_and_nothing_stays_open():
    recorded_event()
    call_command("flush", interactive=False, verbosity=0)
    assert not AuditEvent.objects.exists()
    assert not Team.objects.exists()
    event = recorded_event()
    with pytest.raises(DatabaseError, match="append-only"):
        raw("DELETE FROM audit_auditevent WHERE id = %s", (event.pk,))
