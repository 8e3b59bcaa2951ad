"""PostgreSQL gone under load: the data plane serves from its snapshot and
the usage records wait (in the stream, or the gateway's buffer without Redis)
until the database is back; none is lost.

The database is cut with a TCP relay between it and the gateway and worker
(every connection reset, new ones refused), so the test's own connection,
and every other test's, stays up.
"""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection

from keys import selectors
from tests.conftest import gateway_env
from tests.fault_helpers import Load, TcpProxy, start_worker, wait_for_records
from tests.processes import GatewayProcess, stop
from tests.reliability_report import add_row, statuses_text

OUTAGE_SECONDS = 4.0
UNKNOWN_KEY = "sk-gw-zz9zz9zz" + "x" * 40


@pytest.fixture
def database_relay(transactional_db):
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        pytest.skip("an embedded SQLite database cannot stop apart from the gateway")
    relay = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    yield relay
    relay.close()


def relayed_env(relay: TcpProxy) -> dict[str, str]:
    db = connection.settings_dict
    credentials = f"{db['USER']}:{db['PASSWORD'] or ''}"
    return gateway_env(DATABASE_URL=f"postgres://{credentials}@127.0.0.1:{relay.port}/{db['NAME']}")


def test_the_gateway_serves_from_its_snapshot_while_the_database_is_away(demo, database_relay):
    env = relayed_env(database_relay)
    gateway = GatewayProcess(env)
    worker = start_worker(env) if settings.REDIS_URL else None
    try:
        gateway.wait_for_revision(selectors.config_revision())
        with Load(gateway.url, demo.key, concurrency=8) as load:
            load.wait_for(50)
            database_relay.cut()
            cut = len(load.outcomes)
            time.sleep(0.5)
            unknown = gateway.client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": []},
                headers={"authorization": f"Bearer {UNKNOWN_KEY}"},
            )
            ready = gateway.client.get("/readyz")
            time.sleep(OUTAGE_SECONDS - 0.5)
            database_relay.restore()
            restored = len(load.outcomes)
            load.wait_for(50)
        assert gateway.process.poll() is None
        outcomes = load.outcomes
        during = load.statuses(outcomes[cut:restored])
        # Served throughout, streams complete, nothing slow.
        assert load.statuses() == {200: len(outcomes)}, load.statuses()
        assert during[200] > 50
        assert max(o.seconds for o in outcomes) < 5.0
        # A key the snapshot does not know is refused, not a server error.
        assert unknown.status_code == 401
        assert unknown.json()["error"]["code"] == "invalid_api_key"
        # Still ready: the snapshot serves; the checks say what is missing.
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "unavailable"
        # Every record lands after the database is back.
        answered = len(outcomes) + 1
        assert wait_for_records(load.tag, len(outcomes)) == len(outcomes)
        add_row(
            "PostgreSQL",
            f"database connections cut for {OUTAGE_SECONDS:.0f} s under load"
            + (" (records via the Redis stream)" if settings.REDIS_URL else " (records buffered)"),
            requests=answered,
            client_saw=(
                f"{statuses_text(load.statuses())}, {during[200]} of them during the outage; "
                f"an unknown key: {unknown.status_code}; /readyz {ready.status_code}; "
                f"slowest {max(o.seconds for o in outcomes):.2f} s"
            ),
            lost=f"nothing: {len(outcomes)} usage records after recovery",
        )
    finally:
        if worker is not None:
            stop(worker)
        gateway.close()
