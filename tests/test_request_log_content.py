"""Message content in the request log's detail (console and API), shown to those who
see the record, left out of lists, and pruned with the record."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from governance.models import JobCursor, RequestRecord
from governance.retention import records_prune
from governance.rollups import CURSOR
from tests.api_fixtures import ApiWorld

pytestmark = pytest.mark.django_db

CONTENT = {
    "request": {"messages": [{"role": "user", "content": "Mail [EMAIL] <b>now</b>"}]},
    "response": "Done: [SECRET:aws_access_key].",
    "truncated": True,
}


@pytest.fixture
def world() -> ApiWorld:
    world = ApiWorld()
    RequestRecord.objects.filter(pk=world.record.pk).update(content=CONTENT)
    RequestRecord.objects.filter(pk=world.other_record.pk).update(content=CONTENT)
    return world


def test_the_api_detail_has_the_content_and_the_list_leaves_it_out(world):
    client = world.client("admin")

    detail = client.get(f"/api/v1/request-log/{world.record.pk}/").json()
    listed = client.get("/api/v1/request-log/").json()["results"]

    assert detail["content"] == CONTENT
    assert listed and all("content" not in row for row in listed)


def test_a_record_without_content_says_null(world):
    RequestRecord.objects.filter(pk=world.record.pk).update(content=None)

    detail = world.client("admin").get(f"/api/v1/request-log/{world.record.pk}/").json()

    assert detail["content"] is None


def test_a_team_manager_reads_the_content_of_their_teams_records_only(world):
    client = world.client("manager")

    assert client.get(f"/api/v1/request-log/{world.record.pk}/").json()["content"] == CONTENT
    assert client.get(f"/api/v1/request-log/{world.other_record.pk}/").status_code == 404


def test_the_console_detail_page_shows_the_content_escaped(world):
    from django.test import Client

    admin, manager = Client(), Client()
    admin.force_login(world.users["admin"])
    manager.force_login(world.users["manager"])

    page = admin.get(reverse("governance:request_detail", args=[world.record.request_id]))
    text = page.content.decode()

    assert page.status_code == 200
    assert "Message content" in text and "Truncated" in text
    assert "Done: [SECRET:aws_access_key]." in text
    assert "&lt;b&gt;now&lt;/b&gt;" in text and "<b>now</b>" not in text
    other = reverse("governance:request_detail", args=[world.other_record.request_id])
    assert manager.get(other).status_code == 404


def test_the_console_says_when_no_content_was_kept(world):
    from django.test import Client

    RequestRecord.objects.filter(pk=world.record.pk).update(content=None)
    admin = Client()
    admin.force_login(world.users["admin"])

    text = admin.get(
        reverse("governance:request_detail", args=[world.record.request_id])
    ).content.decode()

    assert "not stored" in text and "Done:" not in text


def test_pruning_takes_the_content_with_the_records(world):
    old = timezone.now() - dt.timedelta(days=10)
    RequestRecord.objects.filter(pk=world.record.pk).update(time=old)
    newest = RequestRecord.objects.order_by("-id").values_list("id", flat=True).first()
    JobCursor.objects.update_or_create(name=CURSOR, defaults={"position": newest})

    with override_settings(GATEWAY_LOG_RETENTION_DAYS=7):
        records_prune()

    assert not RequestRecord.objects.filter(pk=world.record.pk).exists()
    # The other team's record is recent: it keeps its content.
    assert RequestRecord.objects.get(pk=world.other_record.pk).content == CONTENT
