"""The append-only audit trail of administrative changes.

Rows are written only by ``audit.services.audit_event_record``, in the
transaction of the change they describe. Nothing edits or deletes them: the
model and its queryset refuse to, and database triggers (migration 0002)
refuse UPDATE, DELETE and TRUNCATE from any client. Each row carries the hash
of the row before it (``audit.chain``), so an edit made behind the database's
back shows up in ``manage.py audit_verify``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.db import models


class AppendOnlyError(Exception):
    """An attempt to change or remove an audit event."""


class ActorKind(models.TextChoices):
    USER = "user", "User"
    API_TOKEN = "api_token", "API token"
    SYSTEM = "system", "System"


class AuditEventQuerySet(models.QuerySet):
    """Reads only: bulk writes would bypass the hash chain or break it."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events cannot be changed")

    def delete(self) -> NoReturn:
        raise AppendOnlyError("audit events cannot be deleted")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events cannot be changed")

    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events are written one by one by audit_event_record")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events cannot be changed")


class AuditEvent(models.Model):
    """One administrative change: who, what, when, from where, before and after."""

    sequence = models.PositiveBigIntegerField(unique=True, editable=False)
    time = models.DateTimeField(db_index=True, editable=False)
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices, editable=False)
    # The user's or token's primary key when there is one; the name is
    # copied so that the event still says who it was once they are gone.
    actor_id = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    actor_name = models.CharField(max_length=150, db_index=True, editable=False)
    action = models.CharField(max_length=32, editable=False)
    object_type = models.CharField(max_length=100, editable=False)  # e.g. keys.virtualkey
    object_id = models.CharField(max_length=64, editable=False)
    object_repr = models.CharField("object", max_length=200, editable=False)
    # Field values before and after the change, secrets redacted
    # (``audit.snapshots``); ``before`` is null for a creation, ``after``
    # for a deletion.
    before = models.JSONField(null=True, blank=True, editable=False)
    after = models.JSONField(null=True, blank=True, editable=False)
    request_id = models.CharField(max_length=128, blank=True, editable=False)
    client_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    user_agent = models.CharField(max_length=512, blank=True, editable=False)
    previous_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["sequence"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_event_object")]
        verbose_name = "audit event"

    def __str__(self) -> str:
        return f"#{self.sequence} {self.actor_name} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be changed")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit events cannot be deleted")
