"""``manage.py load_prices [FILE]``: load a price file (default: the shipped one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError

from audit.context import system_actor
from governance.services import model_price_set, money_to_micros
from keys.services import ServiceError

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "prices.yaml"


class Command(BaseCommand):
    help = "Load model prices (USD per million tokens) from a YAML file."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", nargs="?", default=str(SHIPPED))

    @system_actor("load_prices")
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            entries = yaml.safe_load(Path(options["file"]).read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from None
        changed = 0
        for index, entry in enumerate(entries):
            try:
                cached = entry.get("cached_input")
                _, was_changed = model_price_set(
                    provider_kind=entry["provider"],
                    model=entry["model"],
                    input_micros_per_mtok=money_to_micros(entry["input"]),
                    output_micros_per_mtok=money_to_micros(entry["output"]),
                    cached_input_micros_per_mtok=money_to_micros(cached)
                    if cached is not None
                    else None,
                    max_output_tokens=entry.get("max_output_tokens"),
                )
            except (KeyError, TypeError, AttributeError, ServiceError) as exc:
                raise CommandError(f"entry {index}: {exc!r}") from None
            changed += was_changed
        self.stdout.write(f"{len(entries)} prices, {changed} created or changed")
