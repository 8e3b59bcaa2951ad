"""Writing the audit trail: one event per change, in the change's transaction.

Service functions that change something call :func:`audit_event_record`
from inside their ``transaction.atomic`` block, after their own writes: the
event commits with the change or not at all. Events are appended one at a
time behind a lock, so the chain has one order whatever the number of
writers:

- PostgreSQL: a transaction-level advisory lock, taken just before the last
  event is read and held until commit. Take it after the change's own row
  locks (as the services here do), so that waiting for it never closes a
  cycle with those locks.
- SQLite: the settings open every transaction with ``BEGIN IMMEDIATE``, so
  writers are serialized from their first statement.

The unique ``sequence`` is the last guard: two writers that somehow read the
same head cannot both commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import models, router, transaction
from django.db.models.deletion import Collector
from django.utils import timezone

from audit.chain import GENESIS_HASH, event_hash
from audit.context import audit_context_current
from audit.models import AuditEvent
from audit.snapshots import Snapshot, audit_snapshot, differs, redact, volatile_fields

# Any constant will do; it only has to be the same in every process.
CHAIN_LOCK_ID = 0x61756469745F  # "audit_"


def audit_event_record(
    *,
    action: str,
    instance: models.Model,
    before: Snapshot | None,
    after: Snapshot | None,
    object_repr: str | None = None,
) -> AuditEvent | None:
    """Append the event "``action`` on ``instance``, from ``before`` to ``after``".

    ``before`` and ``after`` are :func:`audit.snapshots.audit_snapshot`\\ s
    (``None`` before a creation and after a deletion). Nothing is written
    when they hold the same values, ``auto_now`` fields aside. Secrets are
    redacted here, so no caller can forget to. The actor and request come
    from the audit context (``audit.context``). ``object_repr`` replaces
    ``str(instance)`` when that no longer works (an object deleted with
    what its ``__str__`` reads).
    """
    if before is None and after is None:
        raise ValueError("an audit event needs a before or an after")
    using = router.db_for_write(AuditEvent)
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        raise RuntimeError("record an audit event inside the transaction of its change")
    model = type(instance)
    if before is not None and after is not None:
        if not differs(before, after, ignore=volatile_fields(model)):
            return None
    object_id = (after if after is not None else before)[model._meta.pk.attname]
    before, after = redact(before, after)
    context = audit_context_current()
    actor = context.resolve_actor()  # may query (a request's user): before the lock
    event = AuditEvent(
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_name=actor.name[:150],
        action=action,
        object_type=model._meta.label_lower,
        object_id=str(object_id),
        object_repr=(str(instance) if object_repr is None else object_repr)[:200],
        before=before,
        after=after,
        request_id=context.request_id[:128],
        client_ip=context.client_ip,
        user_agent=context.user_agent[:512],
    )
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_ID])
    newest = AuditEvent.objects.using(using).order_by("-sequence")
    head = newest.values_list("sequence", "hash").first()
    event.sequence, event.previous_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
    event.time = timezone.now()  # taken under the lock: times follow the chain's order
    event.hash = event_hash(event)
    event.save(using=using)
    return event


@contextmanager
def audit_deletions(objects: Iterable[models.Model]) -> Iterator[None]:
    """Record a ``delete`` event for each of ``objects`` deleted in the block.

    Objects deleted with them by ``on_delete=CASCADE`` get their own event.
    Use inside the deletion's transaction; nothing is recorded if the block
    raises.
    """
    doomed = [
        (instance, audit_snapshot(instance), str(instance)) for instance in _deleted_with(objects)
    ]
    yield
    for instance, before, description in doomed:
        audit_event_record(
            action="delete", instance=instance, before=before, after=None, object_repr=description
        )


def _deleted_with(objects: Iterable[models.Model]) -> list[models.Model]:
    """``objects`` and everything their deletion cascades to, as Django will delete it."""
    objects = list(objects)
    if not objects:
        return []
    collector = Collector(using=router.db_for_write(type(objects[0])))
    collector.collect(objects)
    found = [instance for instances in collector.data.values() for instance in instances]
    for queryset in collector.fast_deletes:
        found.extend(queryset)
    # Many-to-many rows are part of their objects' state, not objects of their own.
    found = [instance for instance in found if not instance._meta.auto_created]
    return sorted(found, key=lambda instance: (instance._meta.label_lower, str(instance.pk)))
