"""Additive rollups count every record exactly once: out-of-order commits, failed steps,
overlapping runs, reruns, and the rebuild from the request log.

Real commits (``transaction=True``): the out-of-order test holds a write
open on a second connection of the real database while a higher id commits.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections.abc import Callable, Iterator

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.test import override_settings
from django.utils import timezone

from governance import rollups
from governance.generator import Shape, generate
from governance.ledger import insert_records
from governance.models import RequestRecord, UsageRollup
from governance.rollups import rollup_cursor, rollups_rebuild, usage_rollup
from tests.ledger_helpers import assert_rollups_match_the_records, ledger_entry, stored_rows

pytestmark = pytest.mark.django_db(transaction=True)

NOW = dt.datetime(2026, 3, 5, 12, 30, tzinfo=dt.UTC)
postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="ids drawn before commit: PostgreSQL's sequences"
)


def some_records(count: int = 600, days: float = 3, seed: int = 1, until: dt.datetime = NOW):
    generate(Shape(count=count, days=days, keys=5, teams=3, customers=2, until=until, seed=seed))


def entry(request_id: str, minutes_ago: float = 10) -> dict:
    return ledger_entry(request_id, NOW - dt.timedelta(minutes=minutes_ago))


def newest_id() -> int:
    return RequestRecord.objects.order_by("-id").values_list("id", flat=True).first()


class OpenWrite:
    """A record inserted on another connection, in a transaction left open until released."""

    def __init__(self, request_id: str) -> None:
        self.inserted, self.release = threading.Event(), threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._write, args=(request_id,))
        self.thread.start()
        assert self.inserted.wait(10), "the open write did not start"

    def _write(self, request_id: str) -> None:
        try:
            with transaction.atomic():
                insert_records([entry(request_id)])
                self.inserted.set()
                self.release.wait(20)
        except BaseException as exc:  # reported by commit()
            self.failure = exc
        finally:
            connection.close()

    def commit(self) -> None:
        self.release.set()
        self.thread.join(20)
        assert self.failure is None, self.failure


def in_threads(*functions: Callable[[], object]) -> None:
    failures: list[BaseException] = []

    def run(function: Callable[[], object]) -> None:
        try:
            function()
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(function,)) for function in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures


@postgresql_only
def test_a_lower_id_that_commits_after_a_higher_one_is_rolled_up_once():
    some_records(count=200)
    usage_rollup()
    slow = OpenWrite("slow")  # draws the lower id, and holds its transaction open
    insert_records([entry("fast")])  # a higher id, committed first
    # The run waits for the open write to end; it ends while the run waits.
    threading.Timer(0.3, slow.release.set).start()

    run = usage_rollup()

    slow.commit()
    lower, higher = (RequestRecord.objects.get(request_id=tag).id for tag in ("slow", "fast"))
    assert lower < higher <= run.records_seen_up_to
    assert_rollups_match_the_records()
    usage_rollup()
    assert_rollups_match_the_records()


@postgresql_only
def test_a_run_that_cannot_fix_a_frontier_rolls_up_nothing_and_the_next_one_does(monkeypatch):
    monkeypatch.setattr(rollups, "FRONTIER_WAIT_MS", 100)
    some_records(count=200)
    usage_rollup()
    before = rollup_cursor()
    slow = OpenWrite("slow")
    insert_records([entry("fast")])
    try:
        run = usage_rollup()  # the open write outlasts the wait
    finally:
        slow.commit()

    assert run.skipped and run.records_seen_up_to == before == rollup_cursor()
    usage_rollup()
    assert rollup_cursor() == newest_id()
    assert_rollups_match_the_records()


def test_a_usage_read_while_the_job_runs_counts_each_record_once(monkeypatch):
    from governance.api.filters import usage_points

    monkeypatch.setattr(rollups, "STEP_IDS", 20)
    some_records(count=1500)
    total = RequestRecord.objects.count()
    running = threading.Event()
    seen: list[int] = []

    def read_while_running() -> None:
        running.wait(10)
        while running.is_set():
            points, source = usage_points(
                data={},
                records=RequestRecord.objects.all(),
                rollups=UsageRollup.objects.all(),
                bucket=None,
                group_by=None,
                percentiles=False,
            )
            assert source == "rollups"
            seen.append(points[0].requests)

    def run() -> None:
        running.set()
        try:
            usage_rollup()
        finally:
            running.clear()

    in_threads(read_while_running, run)

    assert len(seen) > 5
    assert set(seen) == {total}


def refuse_daily_rows_from(day: dt.datetime) -> Callable[[], None]:
    """A real database error from now on: inserting a daily row of ``day`` or later fails.

    Returns what takes the refusal back.
    """
    text = day.strftime("%Y-%m-%d %H:%M:%S")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_rollup() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'no space left on device'; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_rollup BEFORE INSERT ON governance_usagerollup "
                f"FOR EACH ROW WHEN (NEW.granularity = 'day' AND NEW.bucket >= '{text}+00') "
                "EXECUTE FUNCTION refuse_rollup()"
            )
            drops = (
                "DROP TRIGGER refuse_rollup ON governance_usagerollup",
                "DROP FUNCTION refuse_rollup",
            )
        else:
            cursor.execute(
                "CREATE TRIGGER refuse_rollup BEFORE INSERT ON governance_usagerollup "
                f"WHEN NEW.granularity = 'day' AND NEW.bucket >= '{text}' "
                "BEGIN SELECT RAISE(ABORT, 'no space left on device'); END"
            )
            drops = ("DROP TRIGGER refuse_rollup",)

    def accept() -> None:
        with connection.cursor() as cursor:
            for statement in drops:
                cursor.execute(statement)

    return accept


@pytest.fixture
def refusing_todays_daily_rows() -> Iterator[Callable[[], None]]:
    accept = refuse_daily_rows_from(NOW.replace(hour=0, minute=0))
    accepted = False

    def accept_once() -> None:
        nonlocal accepted
        if not accepted:
            accept()
            accepted = True

    yield accept_once
    accept_once()


def test_a_step_that_fails_after_its_merge_began_leaves_nothing_and_a_rerun_counts_once(
    monkeypatch, refusing_todays_daily_rows
):
    monkeypatch.setattr(rollups, "STEP_IDS", 100)
    some_records(count=600, days=3)

    with pytest.raises(DatabaseError):
        usage_rollup()

    # The steps before the failing one are in; the failing one left nothing, not even the cursor.
    position = rollup_cursor()
    assert 0 < position < newest_id()
    assert max(key[0] for key in stored_rows("day")) < NOW.replace(hour=0, minute=0)
    assert_rollups_match_the_records(up_to_id=position)
    with pytest.raises(DatabaseError):
        usage_rollup()  # a rerun while the error lasts: still nothing twice
    assert rollup_cursor() == position
    assert_rollups_match_the_records(up_to_id=position)

    refusing_todays_daily_rows()  # the disk has room again
    usage_rollup()

    assert rollup_cursor() == newest_id()
    assert_rollups_match_the_records()


def test_running_again_and_again_adds_each_record_once(monkeypatch):
    monkeypatch.setattr(rollups, "STEP_IDS", 150)
    some_records(count=500)
    usage_rollup()
    some_records(count=100, days=0.1, seed=2)  # new records of the last hours, and late ones:
    insert_records([entry("late", minutes_ago=60 * 30)])

    for _ in range(3):
        usage_rollup()

    assert_rollups_match_the_records()


def test_overlapping_runs_merge_each_step_once(monkeypatch):
    monkeypatch.setattr(rollups, "STEP_IDS", 40)
    some_records(count=600)

    in_threads(usage_rollup, usage_rollup, usage_rollup)
    usage_rollup()

    assert rollup_cursor() == newest_id()
    assert_rollups_match_the_records()


def test_a_rebuild_repairs_damaged_rows_and_then_catches_up():
    some_records(count=500)
    usage_rollup()
    UsageRollup.objects.filter(granularity="hour", dimension="key").update(
        requests=F("requests") + 3
    )
    UsageRollup.objects.filter(granularity="day", dimension="team", team_id=1).delete()
    some_records(count=50, days=0.1, seed=9)  # not rolled up yet

    out = io.StringIO()
    call_command("rebuild_rollups", stdout=out)

    assert "rebuilt 4 days" in out.getvalue()
    assert rollup_cursor() == newest_id()
    assert_rollups_match_the_records()


def test_a_rebuild_from_a_day_leaves_the_days_before_it_alone():
    some_records(count=500)
    usage_rollup()
    UsageRollup.objects.update(errors=99)  # every row damaged
    since = NOW.replace(hour=0, minute=0) - dt.timedelta(days=1)

    rollups_rebuild(since=since.date())

    rows = stored_rows("hour")
    assert {key[0] < since for key, row in rows.items() if row["errors"] == 99} == {True}
    assert any(key[0] >= since for key in rows)
    assert_rollups_match_the_records(since=since)


@override_settings(GATEWAY_LOG_RETENTION_DAYS=2)
def test_a_rebuild_refuses_days_whose_records_may_be_pruned():
    some_records(count=300, days=4, until=timezone.now())
    usage_rollup()

    with pytest.raises(CommandError, match="may be pruned"):
        call_command(
            "rebuild_rollups", "--since", f"{timezone.now() - dt.timedelta(days=3):%Y-%m-%d}"
        )
    with pytest.raises(CommandError, match="not a date"):
        call_command("rebuild_rollups", "--since", "yesterday")

    before = stored_rows("day")
    run = rollups_rebuild()  # by default: the first day all of whose records are kept, on

    assert run.days == 2
    assert stored_rows("day") == before
