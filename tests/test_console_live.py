"""The live traffic WebSocket: signed in by the session, fed by the ledger's writes.

The records go through the real ledger: in cluster mode into the Redis usage
stream (which the feed reads), in embedded mode into the database (and to
the process's listeners after the flush).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings

from gateway_project.asgi import router
from governance.ledger import ledger
from governance.live import CLOSE_FORBIDDEN

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")


@pytest.fixture
def fresh_ledger(monkeypatch):
    # The ledger's sink is bound to the event loop it was made on; each test
    # scenario runs on its own loop.
    monkeypatch.setattr(ledger, "_sink", None)
    monkeypatch.setattr(ledger, "buffer", [])
    return ledger


def cookie(client) -> tuple[bytes, bytes]:
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode())


def entry(team_id: int, request_id: str) -> dict:
    return {"request_id": request_id, "time": time.time(), "team_id": team_id, "status": 200}


async def watch(headers, entries, expect: int = 0) -> tuple[bool, int | None, list[dict]]:
    """Connect, let the ledger write ``entries``, and read ``expect`` records.

    A batch may arrive in several messages (the stream reader wakes on the
    first entry written).
    """
    socket = WebsocketCommunicator(router, "/console/live/ws", headers=headers)
    connected, code = await socket.connect()
    received: list[dict] = []
    if connected:
        # Cluster mode reads the stream from "now": wait until the reader waits.
        await asyncio.sleep(0.3)
        for item in entries:
            ledger.record(item)
        assert await ledger.flush()
        while len(received) < expect:
            received += (await socket.receive_json_from(timeout=10))["records"]
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
    return connected, code, received


def test_an_admin_sees_every_finished_request(console, who, fresh_ledger):
    entries = [entry(console.team.pk, "live-1"), entry(console.other_team.pk, "live-2")]
    connected, _, received = async_to_sync(watch)([ORIGIN, cookie(who.admin)], entries, 2)
    assert connected
    assert [r["request_id"] for r in received] == ["live-1", "live-2"]


def test_a_team_manager_sees_only_their_teams_requests(console, who, fresh_ledger):
    entries = [entry(console.other_team.pk, "theirs"), entry(console.team.pk, "mine")]
    connected, _, received = async_to_sync(watch)([ORIGIN, cookie(who.manager)], entries, 1)
    assert connected
    assert [r["request_id"] for r in received] == ["mine"]


@pytest.mark.parametrize("persona", ["auditor", "outsider"])
def test_operators_who_may_not_read_the_log_are_turned_away(who, persona, fresh_ledger):
    connected, code, _ = async_to_sync(watch)([ORIGIN, cookie(getattr(who, persona))], [])
    assert not connected
    assert code == CLOSE_FORBIDDEN


def test_a_visitor_without_a_session_is_turned_away(fresh_ledger):
    connected, code, _ = async_to_sync(watch)([ORIGIN], [])
    assert (connected, code) == (False, CLOSE_FORBIDDEN)


def test_a_page_of_another_site_cannot_open_the_feed(who, fresh_ledger):
    evil = (b"origin", b"http://evil.example")
    connected, _, _ = async_to_sync(watch)([evil, cookie(who.admin)], [])
    assert not connected
