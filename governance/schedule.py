"""The periodic jobs in embedded mode: Celery beat's schedule, run in the web process.

Embedded mode has no broker and no worker: each web process runs the
entries of ``CELERY_BEAT_SCHEDULE`` itself, each task on its own interval
in a worker thread (the jobs are synchronous ORM code), so ``make run`` is
complete. The jobs are idempotent, so several web processes running them
write the same rows. Cluster mode leaves this off: Celery beat schedules
and the Celery worker runs them.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.apps import apps
from django.conf import settings

logger = logging.getLogger(__name__)

# Nothing to do without Redis: embedded records go straight to the database.
EMBEDDED_SKIPS = frozenset({"governance.usage_drain"})
FIRST_RUN_DELAY_SECONDS = 2.0


def _interval(entry: dict[str, Any]) -> float:
    schedule = entry["schedule"]
    return float(schedule.total_seconds() if hasattr(schedule, "total_seconds") else schedule)


def _import_task_modules() -> None:
    """Import each installed app's ``tasks`` module: importing registers its tasks.

    What Celery's own ``import_default_modules`` would do, without its Django
    fixup, which runs Django's system checks and so imports every URL
    configuration, view, admin module and database backend: about 20 MB more
    resident memory in each web process, for code the data plane never runs.
    """
    for config in apps.get_app_configs():
        name = f"{config.name}.tasks"
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # an app that is a module, not a package
            continue
        if found is not None:
            importlib.import_module(name)


class InProcessSchedule:
    """Runs the beat schedule's tasks in this process until stopped."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks or settings.REDIS_URL:
            return
        from gateway_project.celery import app

        _import_task_modules()
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            if entry["task"] in EMBEDDED_SKIPS:
                continue
            task = app.tasks[entry["task"]]
            self._tasks.append(
                asyncio.create_task(self._run(task, _interval(entry)), name=f"schedule-{name}")
            )

    async def _run(self, task: Any, interval: float) -> None:
        # Its own thread, not the one the request path's database calls share.
        call = database_sync_to_async(task, thread_sensitive=False)
        await asyncio.sleep(min(interval, FIRST_RUN_DELAY_SECONDS))
        while True:
            try:
                await call()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("periodic task %s failed", task.name)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


schedule = InProcessSchedule()
