"""The trail exports as JSON Lines or CSV, streamed, filtered by time and actor."""

from __future__ import annotations

import csv
import io
import json
import warnings

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import AsyncClient
from django.utils import timezone

from audit.context import Actor, AuditContext, audit_context
from audit.export import COLUMNS
from audit.models import AuditEvent
from keys import services

pytestmark = pytest.mark.django_db

ALICE = AuditContext(actor=Actor(kind="user", name="alice", id=7))


@pytest.fixture
def trail() -> dict:
    """Two events by the system, then (after ``middle``) two by alice."""
    services.team_create(name="ops")
    services.team_create(name="lab")
    middle = timezone.now()
    with audit_context(ALICE):
        services.team_create(name="ads")
        services.team_update(team=services.team_create(name="web"), description="Web")
    return {"middle": middle.isoformat()}


def export(*args: str) -> str:
    out = io.StringIO()
    call_command("audit_export", *args, stdout=out)
    return out.getvalue()


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_the_command_exports_every_event_as_json_lines(trail):
    records = jsonl(export("--format", "jsonl"))
    stored = list(AuditEvent.objects.order_by("sequence"))
    assert [r["sequence"] for r in records] == [e.sequence for e in stored] == [1, 2, 3, 4, 5]
    assert set(records[0]) == set(COLUMNS)
    assert records[-1]["hash"] == stored[-1].hash
    last = records[-1]
    assert (last["before"]["description"], last["after"]["description"]) == ("", "Web")


def test_the_command_exports_csv_with_a_header(trail):
    rows = list(csv.DictReader(io.StringIO(export("--format", "csv"))))
    assert len(rows) == 5
    assert list(rows[0]) == list(COLUMNS)
    assert json.loads(rows[-1]["after"])["description"] == "Web"
    assert rows[0]["before"] == "" and rows[0]["actor_name"] == "system"


def test_the_command_filters_by_actor_and_time(trail):
    by_alice = jsonl(export("--actor", "alice"))
    assert [r["sequence"] for r in by_alice] == [3, 4, 5]
    assert [r["sequence"] for r in jsonl(export("--since", trail["middle"]))] == [3, 4, 5]
    assert [r["sequence"] for r in jsonl(export("--until", trail["middle"]))] == [1, 2]
    assert jsonl(export("--since", "2000-01-01", "--until", "2000-01-02")) == []


def test_the_command_refuses_a_date_it_cannot_read():
    with pytest.raises(CommandError, match="not an ISO 8601"):
        export("--since", "yesterday")


def test_staff_stream_the_export_from_the_console(admin_client, trail):
    response = admin_client.get("/audit/export", {"format": "jsonl", "actor": "alice"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response["Content-Disposition"]
    records = jsonl(b"".join(response.streaming_content).decode())
    assert [r["sequence"] for r in records] == [3, 4, 5]


def test_the_console_export_speaks_csv_and_time_filters(admin_client, trail):
    response = admin_client.get("/audit/export", {"format": "csv", "until": trail["middle"]})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["sequence"] for row in rows] == ["1", "2"]


def test_the_console_export_refuses_bad_parameters(admin_client):
    assert admin_client.get("/audit/export", {"format": "xml"}).status_code == 400
    assert admin_client.get("/audit/export", {"since": "soon"}).status_code == 400


def test_only_staff_allowed_to_view_events_may_export(client, trail):
    assert client.get("/audit/export").status_code == 302  # to the login page
    user = get_user_model().objects.create_user("bob", password="pw-for-tests-1")
    client.force_login(user)
    assert client.get("/audit/export").status_code == 302
    user.is_staff = True
    user.save()
    assert client.get("/audit/export").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    user = get_user_model().objects.get(pk=user.pk)
    client.force_login(user)
    assert client.get("/audit/export").status_code == 200


def test_over_asgi_the_export_streams_without_reading_everything_first(admin_user, trail):
    client = AsyncClient()
    client.force_login(admin_user)

    async def download() -> tuple[bool, bytes]:
        response = await client.get("/audit/export", {"format": "jsonl"})
        chunks = [chunk async for chunk in response.streaming_content]
        return response.is_async, b"".join(chunks)

    with warnings.catch_warnings():
        # Django warns when it must read a synchronous iterator whole.
        warnings.simplefilter("error")
        is_async, body = async_to_sync(download)()
    assert is_async
    assert [r["sequence"] for r in jsonl(body.decode())] == [1, 2, 3, 4, 5]
