"""The Celery application: Redis broker, JSON only, time limits, late acknowledgement, and a
beat schedule in code whose every task exists."""

from __future__ import annotations

from django.conf import settings

from gateway_project.celery import app


def test_tasks_travel_as_json_only_through_the_redis_broker_in_cluster_mode():
    conf = app.conf
    assert conf.broker_url == (settings.REDIS_URL or "memory://")
    assert conf.task_always_eager is not bool(settings.REDIS_URL)
    assert (conf.task_serializer, conf.result_serializer, list(conf.accept_content)) == (
        "json",
        "json",
        ["json"],
    )


def test_a_task_is_acknowledged_after_it_ran_and_given_again_if_its_worker_died():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    # Redelivery of an unacknowledged task waits longer than a task may run.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit


def test_the_beat_schedule_names_registered_tasks_that_expire_rather_than_pile_up():
    app.loader.import_default_modules()
    schedule = app.conf.beat_schedule
    assert {entry["task"] for entry in schedule.values()} == {
        "governance.usage_drain",
        "governance.usage_rollup",
        "governance.budget_periods_close",
        "governance.records_prune",
    }
    for entry in schedule.values():
        assert entry["task"] in app.tasks
        assert 0 < entry["schedule"] <= entry["options"]["expires"]
