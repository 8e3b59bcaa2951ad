"""Synthetic request records, for the scale measurements and their tests.

The distribution looks like a busy gateway's: keys spread over teams and
customers, a few providers and models, mostly successes with some 429s and
5xx, tokens and latencies with long tails. Rows go in with ``COPY`` on
PostgreSQL (hundreds of thousands a second) and batched inserts elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection, transaction

from governance.ledger import insert_records, record_writers_lock
from governance.models import RequestRecord

MODELS = (
    ("openai", "gpt-4o", 2_500_000, 10_000_000),
    ("openai", "gpt-4o-mini", 150_000, 600_000),
    ("anthropic", "claude-sonnet-4", 3_000_000, 15_000_000),
    ("anthropic", "claude-haiku-3-5", 800_000, 4_000_000),
    ("bedrock", "llama-3-70b", 990_000, 990_000),
    ("gemini", "gemini-2.0-flash", 100_000, 400_000),
)
# (status, error code, weight): mostly successes.
STATUSES = ((200, "", 950), (429, "rate_limit_exceeded", 25), (502, "upstream_error", 15))
STATUSES += ((504, "upstream_timeout", 5), (400, "invalid_request", 5))


@dataclass(frozen=True)
class Shape:
    """What the generated records look like."""

    count: int
    days: float = 30.0
    keys: int = 200
    teams: int = 40
    customers: int = 8
    first_key_id: int = 1
    until: dt.datetime | None = None
    seed: int | None = None


def records(shape: Shape) -> Iterator[dict]:
    """``shape.count`` ledger entries (the ledger's own entry format), oldest first."""
    rng = random.Random(shape.seed)
    # Fresh ids on every run, even with the same seed: runs add up.
    prefix = uuid.uuid4().hex[:10]
    until = (shape.until or dt.datetime.now(dt.UTC)).timestamp()
    span = shape.days * 86400
    statuses = [s[:2] for s in STATUSES]
    weights = [s[2] for s in STATUSES]
    step = span / max(shape.count, 1)
    for index in range(shape.count):
        key = shape.first_key_id + rng.randrange(shape.keys)
        team = 1 + key % shape.teams
        provider, model, input_price, output_price = MODELS[rng.randrange(len(MODELS))]
        status, error = rng.choices(statuses, weights)[0]
        ok = status < 400
        input_tokens = int(rng.lognormvariate(6, 1.2)) if ok or status == 502 else 0
        output_tokens = int(rng.lognormvariate(5, 1.0)) if ok else 0
        cached = input_tokens // 2 if ok and rng.random() < 0.2 else 0
        latency = int(rng.lognormvariate(6.3, 0.8)) + 5
        stream = rng.random() < 0.6
        yield {
            "request_id": f"g{prefix}{index:x}",
            "time": until - span + index * step + rng.random() * step,
            "key_id": key,
            "team_id": team,
            "customer_id": 1 + team % shape.customers,
            "requested_model": model,
            "provider": provider,
            "served_model": model if status != 400 else "",
            "status": status,
            "error_code": error,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached,
            "cost_micros": -(-(input_tokens * input_price + output_tokens * output_price) // 10**6),
            "latency_ms": latency,
            "ttft_ms": max(1, latency // 4) if stream and ok else None,
            "upstream_ms": max(1, latency - 3),
            "retries": 1 if rng.random() < 0.02 else 0,
            "stream": stream,
            "user_agent": "OpenAI/Python 1.50.0",
        }


def generate(shape: Shape, *, batch: int = 50_000) -> int:
    """Store ``shape.count`` generated records; returns how many."""
    entries = records(shape)
    if connection.vendor == "postgresql":
        return _copy(entries)
    stored = 0
    chunk: list[dict] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) >= batch:
            stored += insert_records(chunk)
            chunk = []
    return stored + insert_records(chunk)


COPY_FIELDS = (
    "request_id",
    "time",
    "key_id",
    "team_id",
    "customer_id",
    "requested_model",
    "provider",
    "served_model",
    "status",
    "error_code",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cost_micros",
    "latency_ms",
    "ttft_ms",
    "upstream_ms",
    "retries",
    "stream",
    "user_agent",
)


def _copy(entries: Iterator[dict]) -> int:
    """``COPY`` the entries in; columns not listed take their defaults."""
    table = RequestRecord._meta.db_table
    fields = {f.attname: f for f in RequestRecord._meta.concrete_fields}
    # Columns not generated get the model's default (JSON ones as JSON text).
    others = [f for name, f in fields.items() if name not in COPY_FIELDS and not f.primary_key]
    constant_columns = [f.column for f in others]
    constants = [
        json.dumps(f.get_default()) if f.get_internal_type() == "JSONField" else f.get_default()
        for f in others
    ]
    columns = ", ".join([fields[name].column for name in COPY_FIELDS] + constant_columns)
    stored = 0
    with transaction.atomic(), connection.cursor() as cursor:
        record_writers_lock(cursor)
        raw = cursor.cursor  # psycopg's own cursor: COPY needs it
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for entry in entries:
                entry["time"] = dt.datetime.fromtimestamp(entry["time"], dt.UTC)
                copy.write_row([entry.get(name) for name in COPY_FIELDS] + constants)
                stored += 1
    return stored
