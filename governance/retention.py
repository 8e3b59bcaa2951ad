"""Pruning raw request records past ``GATEWAY_LOG_RETENTION_DAYS`` (rollups stay).

Deletes in batches of ``GATEWAY_RETENTION_BATCH_SIZE`` ids, each its own
short transaction, so that the drain's inserts and the console's reads are
never held up for long. Only records the rollup job has already read
(ids at or below its cursor) are deleted: their hours stay in the rollups.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from governance.models import JobCursor, RequestRecord
from governance.rollups import CURSOR, retention_cutoff

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneRun:
    deleted: int
    batches: int


def records_prune(*, time_budget: float = 120.0) -> PruneRun:
    """Delete the records older than the retention period, oldest first."""
    cutoff = retention_cutoff()
    if cutoff is None:
        return PruneRun(deleted=0, batches=0)
    rolled_up = JobCursor.objects.filter(name=CURSOR).values_list("position", flat=True).first()
    if not rolled_up:
        return PruneRun(deleted=0, batches=0)
    old = RequestRecord.objects.filter(time__lt=cutoff, id__lte=rolled_up).order_by()
    deleted = batches = 0
    started = time.monotonic()
    while time.monotonic() - started < time_budget:
        # The time index finds the oldest; the delete is by primary key.
        ids = list(
            old.order_by("time").values_list("id", flat=True)[
                : settings.GATEWAY_RETENTION_BATCH_SIZE
            ]
        )
        if not ids:
            break
        with transaction.atomic():
            count, _ = RequestRecord.objects.filter(id__in=ids).delete()
        deleted += count
        batches += 1
    if deleted:
        logger.info(
            "retention: deleted %d request records older than %s in %d batches",
            deleted,
            cutoff.isoformat(),
            batches,
        )
    return PruneRun(deleted=deleted, batches=batches)
