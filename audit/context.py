"""Who is making the current change, and from where: the audit context.

A ``contextvars`` variable, so that it follows the code through threads
(``sync_to_async``) and tasks without being passed around. The console's
middleware (``audit.middleware``) sets it for each request; management
commands set it with :func:`system_actor`. When nothing set it, changes are
attributed to the system actor ``system``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from audit.models import ActorKind


@dataclass(frozen=True)
class Actor:
    """Who: a kind, the primary key of the user or token if any, and a name."""

    kind: str
    name: str
    id: int | None = None


SYSTEM_ACTOR = Actor(kind=ActorKind.SYSTEM, name="system")


@dataclass(frozen=True)
class AuditContext:
    """The actor and the request a change belongs to.

    ``actor`` may be a callable: a request's user is only looked up when a
    change is actually recorded, not on every request.
    """

    actor: Actor | Callable[[], Actor] = SYSTEM_ACTOR
    request_id: str = ""
    client_ip: str | None = None
    user_agent: str = ""

    def resolve_actor(self) -> Actor:
        return self.actor() if callable(self.actor) else self.actor


_current: ContextVar[AuditContext | None] = ContextVar("audit_context", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def audit_context_current() -> AuditContext:
    """The context set by the innermost :func:`audit_context`, or the system's."""
    return _current.get() or AuditContext()


@contextmanager
def audit_context(context: AuditContext) -> Iterator[AuditContext]:
    """Attribute the changes made inside the block to ``context``."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


@contextmanager
def system_actor(name: str) -> Iterator[AuditContext]:
    """Attribute changes to ``system:<name>`` (e.g. a management command).

    Usable as a decorator too; each run gets its own request id, so that the
    events of one run can be told apart from those of the next.
    """
    context = AuditContext(
        actor=Actor(kind=ActorKind.SYSTEM, name=f"system:{name}"), request_id=new_request_id()
    )
    with audit_context(context):
        yield context
