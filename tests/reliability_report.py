"""Rows of the reliability report (docs/reliability.md, ``make reliability``).

The fault and fuzz tests call :func:`add_row` with what they tried and what
they saw; with ``GATEWAY_RELIABILITY_REPORT`` set (the make target sets it)
each row is appended to that file as one JSON line, and
``scripts/reliability_report.py`` turns the lines into the page. Without it
rows are dropped: an ordinary test run writes nothing.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

import orjson


def add_row(
    area: str,
    case: str,
    *,
    requests: int | None,
    client_saw: str,
    lost: str,
    mode: str | None = None,
) -> None:
    """One line of the report: ``area`` (fault, input class, security), the
    ``case`` tried, how many ``requests`` (None: the few of a suite test),
    what the client saw, what was lost."""
    path = os.environ.get("GATEWAY_RELIABILITY_REPORT")
    if not path:
        return
    if mode is None:
        database = os.environ.get("DATABASE_URL", "")
        mode = "PostgreSQL" if database.startswith("postgres") else "SQLite"
        if os.environ.get("REDIS_URL"):
            mode += " + Redis"
    row = {
        "area": area,
        "case": case,
        "mode": mode,
        "requests": requests,
        "client_saw": client_saw,
        "lost": lost,
    }
    with open(path, "ab") as out:
        out.write(orjson.dumps(row) + b"\n")


def statuses_text(statuses: Iterable[int | str] | Counter) -> str:
    """``200: 95, 503: 5``: a status count as the report shows it."""
    counts = statuses if isinstance(statuses, Counter) else Counter(statuses)
    return ", ".join(f"{status}: {count}" for status, count in sorted(counts.items(), key=str))
