"""The hash chain that makes the audit trail tamper-evident.

Each event's ``hash`` is ``sha256(canonical JSON of its content +
previous_hash)``, and ``previous_hash`` is the hash of the event before it
(``GENESIS_HASH`` for the first). Changing, removing or inserting an event
breaks a link that :func:`chain_verify` finds, unless every later hash is
recomputed too; publishing the head hash now and then (``audit_verify``
prints it) closes that gap.

The canonical form must give the same text for what was written and for what
the database gives back. Keys are sorted, and numbers are written by their
exact decimal value (``15e-1``), because PostgreSQL's ``jsonb`` keeps
numbers as decimals: a float ``1e100`` comes back as the integer ``10**100``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.models import AuditEvent

GENESIS_HASH = "0" * 64

# Everything an event says, in the order it is hashed (the order is cosmetic:
# the canonical form sorts keys).
CONTENT_FIELDS = (
    "sequence",
    "time",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "before",
    "after",
    "request_id",
    "client_ip",
    "user_agent",
)


def canonical_json(value: Any) -> str:
    """``value`` as JSON with one spelling only: sorted keys, exact numbers."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return _canonical_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical_json(item) for item in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(key), item) for key, item in value.items())
        members = (f"{canonical_json(key)}:{canonical_json(item)}" for key, item in items)
        return "{" + ",".join(members) + "}"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _canonical_number(value: int | float) -> str:
    number = decimal.Decimal(repr(value) if isinstance(value, float) else value)
    if not number.is_finite():
        raise ValueError("the audit trail holds finite numbers only")
    digits = number.as_tuple().digits
    if not any(digits):
        return "0"
    # Strip trailing zeros without rounding (the context is as precise as the number).
    number = number.normalize(decimal.Context(prec=len(digits)))
    sign, digits, exponent = number.as_tuple()
    return f"{'-' if sign else ''}{''.join(map(str, digits))}e{exponent}"


def event_content(event: AuditEvent) -> dict[str, Any]:
    content = {name: getattr(event, name) for name in CONTENT_FIELDS}
    content["time"] = event.time.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if event.client_ip:
        content["client_ip"] = str(ipaddress.ip_address(event.client_ip))
    return content


def event_hash(event: AuditEvent) -> str:
    text = canonical_json(event_content(event)) + event.previous_hash
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """What a walk of the chain found: how many events, the head, the first break."""

    count: int
    head_sequence: int | None
    head_hash: str
    broken: str | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None


def chain_verify(events: Iterable[AuditEvent]) -> ChainReport:
    """Walk ``events`` (in sequence order) and stop at the first broken link."""
    count = 0
    previous: AuditEvent | None = None
    for event in events:
        problem = _link_problem(previous, event)
        if problem:
            return ChainReport(
                count=count,
                head_sequence=previous.sequence if previous else None,
                head_hash=previous.hash if previous else GENESIS_HASH,
                broken=f"event #{event.sequence}: {problem}",
            )
        count += 1
        previous = event
    return ChainReport(
        count=count,
        head_sequence=previous.sequence if previous else None,
        head_hash=previous.hash if previous else GENESIS_HASH,
    )


def _link_problem(previous: AuditEvent | None, event: AuditEvent) -> str | None:
    expected_sequence = previous.sequence + 1 if previous else 1
    if event.sequence != expected_sequence:
        return f"expected event #{expected_sequence} here; events are missing"
    expected_previous = previous.hash if previous else GENESIS_HASH
    if event.previous_hash != expected_previous:
        which = f"event #{previous.sequence}" if previous else "the start of the chain"
        return f"previous_hash does not match {which} (an event was altered, removed or inserted)"
    if event_hash(event) != event.hash:
        return "its hash does not match its content (the event was altered)"
    return None
