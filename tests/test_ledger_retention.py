"""Retention: raw records past GATEWAY_LOG_RETENTION_DAYS are pruned in batches; rollups stay."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from governance.generator import Shape, generate
from governance.ledger import insert_records
from governance.models import RequestRecord
from governance.retention import records_prune
from governance.rollups import usage_rollup
from tests.ledger_helpers import stored_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def five_days():
    generate(Shape(count=500, days=5, keys=4, teams=2, customers=1, seed=3))
    usage_rollup()


@override_settings(GATEWAY_LOG_RETENTION_DAYS=2, GATEWAY_RETENTION_BATCH_SIZE=40)
def test_records_older_than_the_retention_are_deleted_in_batches_and_rollups_stay(five_days):
    cutoff = timezone.now() - dt.timedelta(days=2)
    old = RequestRecord.objects.filter(time__lt=cutoff).count()
    kept = RequestRecord.objects.filter(time__gte=cutoff).count()
    hours, days = stored_rows("hour"), stored_rows("day")

    run = records_prune()

    assert old > 200 and kept > 100
    assert run.deleted == old and run.batches >= old // 40
    assert RequestRecord.objects.filter(time__lt=cutoff).count() == 0
    assert RequestRecord.objects.count() == kept
    assert (stored_rows("hour"), stored_rows("day")) == (hours, days)
    usage_rollup()  # the next rollup run leaves the pruned hours as they were
    assert stored_rows("hour") == hours


@override_settings(GATEWAY_LOG_RETENTION_DAYS=2)
def test_a_record_not_rolled_up_yet_is_not_pruned(five_days):
    old_time = (timezone.now() - dt.timedelta(days=4)).timestamp()
    insert_records([{"request_id": "unrolled", "time": old_time, "status": 200}])

    records_prune()

    assert RequestRecord.objects.filter(request_id="unrolled").exists()
    assert (
        not RequestRecord.objects.filter(time__lt=timezone.now() - dt.timedelta(days=3))
        .exclude(request_id="unrolled")
        .exists()
    )


@override_settings(GATEWAY_LOG_RETENTION_DAYS=0)
def test_a_retention_of_zero_keeps_everything(five_days):
    assert records_prune().deleted == 0
    assert RequestRecord.objects.count() == 500
