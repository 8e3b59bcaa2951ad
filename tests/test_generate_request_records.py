"""``manage.py generate_request_records``: synthetic request records for scale tests."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max, Min
from django.utils import timezone

from governance.models import RequestRecord

pytestmark = pytest.mark.django_db


def test_it_stores_n_records_spread_over_the_days_asked_for():
    out = io.StringIO()
    started = timezone.now()

    call_command(
        "generate_request_records",
        "1200",
        "--days",
        "2",
        "--keys",
        "7",
        "--chunk",
        "500",
        stdout=out,
    )

    assert "stored 1200 request records" in out.getvalue()
    records = RequestRecord.objects.all()
    assert records.count() == records.values("request_id").distinct().count() == 1200
    span = records.aggregate(first=Min("time"), last=Max("time"))
    assert started - dt.timedelta(days=2, minutes=1) <= span["first"]
    assert span["last"] <= timezone.now()
    assert span["last"] - span["first"] > dt.timedelta(days=1, hours=20)
    assert records.values("key_id").distinct().count() == 7
    assert records.filter(status__gte=400).exists() and records.filter(status=200).exists()
    assert records.filter(cost_micros__gt=0).exists()


def test_runs_add_up_even_with_the_same_seed():
    call_command("generate_request_records", "100", "--seed", "5", stdout=io.StringIO())
    call_command("generate_request_records", "100", "--seed", "5", stdout=io.StringIO())

    assert RequestRecord.objects.count() == 200


def test_a_negative_count_is_refused():
    with pytest.raises(CommandError):
        call_command("generate_request_records", "-1")
