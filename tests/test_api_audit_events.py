"""The audit trail over the API: read-only, filtered by time, actor and object, exportable."""

from __future__ import annotations

import csv
import io
import json

import pytest

from audit.export import COLUMNS
from audit.models import AuditEvent
from tests.api_fixtures import ApiWorld, error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> ApiWorld:
    world = ApiWorld()
    world.client("admin").post("/api/v1/customers/", {"name": "globex"}, format="json")
    return world


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_an_auditor_reads_the_trail_newest_first(world):
    rows = results(world.client("auditor").get("/api/v1/audit-events/?page_size=500"))

    sequences = [row["sequence"] for row in rows]
    assert sequences == sorted(sequences, reverse=True)
    assert len(rows) == AuditEvent.objects.count()
    assert {"actor_name", "before", "after", "hash", "previous_hash"} <= set(rows[0])


def test_it_filters_by_actor_and_object(world):
    client = world.client("auditor")
    customer = "keys.customer"

    by_token = results(client.get("/api/v1/audit-events/?actor_kind=api_token"))
    by_actor = results(client.get("/api/v1/audit-events/?actor=root (token admin-token)"))
    by_object = results(
        client.get(f"/api/v1/audit-events/?object_type={customer}&object_id={world.customer.pk}")
    )

    assert [row["object_repr"] for row in by_token] == ["globex"]
    assert by_actor == by_token
    assert [(row["action"], row["object_id"]) for row in by_object] == [
        ("create", str(world.customer.pk))
    ]


def test_it_filters_by_time(world):
    client = world.client("auditor")
    newest = AuditEvent.objects.order_by("-sequence").first()

    since = results(client.get("/api/v1/audit-events/", {"since": newest.time.isoformat()}))
    until = results(client.get("/api/v1/audit-events/", {"until": newest.time.isoformat()}))

    assert [row["sequence"] for row in since] == [newest.sequence]
    assert newest.sequence not in [row["sequence"] for row in until]


def test_the_trail_cannot_be_changed_through_the_api(world):
    client = world.client("admin")
    event = AuditEvent.objects.first()
    count = AuditEvent.objects.count()

    answers = [
        client.post("/api/v1/audit-events/", {}, format="json"),
        client.patch(f"/api/v1/audit-events/{event.pk}/", {"action": "x"}, format="json"),
        client.delete(f"/api/v1/audit-events/{event.pk}/"),
    ]

    # Nobody may write the trail (403), and there is no method to do it with anyway.
    assert [error_of(a)["code"] for a in answers] == ["permission_denied"] * 3
    assert AuditEvent.objects.count() == count
    assert AuditEvent.objects.get(pk=event.pk).action == event.action


def test_a_team_manager_has_no_audit_trail(world):
    response = world.client("manager").get("/api/v1/audit-events/")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"


def test_the_export_streams_json_lines_in_chain_order(world):
    response = world.client("auditor").get("/api/v1/audit-events/export/?actor_kind=api_token")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert "attachment" in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    (event,) = [json.loads(line) for line in lines]
    assert event["actor_name"] == "root (token admin-token)"
    assert set(event) == set(COLUMNS)


def test_the_export_streams_csv_with_a_header(world):
    response = world.client("auditor").get("/api/v1/audit-events/export/?output=csv")

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert tuple(rows[0]) == COLUMNS
    sequences = [int(row[0]) for row in rows[1:]]
    assert sequences == sorted(sequences)
    assert len(sequences) == AuditEvent.objects.count()


def test_an_unknown_export_format_is_a_400(world):
    response = world.client("auditor").get("/api/v1/audit-events/export/?output=xml")

    assert response.status_code == 400
    assert "output" in error_of(response)["fields"]
