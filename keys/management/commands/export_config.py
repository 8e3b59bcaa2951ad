"""``manage.py export_config``: write the current configuration as YAML."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from keys.declarative import dump_yaml, export_config


class Command(BaseCommand):
    help = "Export the configuration in the declarative format (secrets by reference only)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        text = dump_yaml(export_config())
        if options.get("output"):
            with open(options["output"], "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            self.stdout.write(text, ending="")
