"""``manage.py apply_config FILE``: make the gateway match a configuration file."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.context import system_actor
from keys.declarative import ConfigError, apply_config, load_file


class Command(BaseCommand):
    help = "Apply a declarative configuration file (idempotent; see docs/configuration.md)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="path of the YAML file")

    @system_actor("apply_config")
    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = apply_config(load_file(options["file"]))
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        for outcome in ("created", "changed", "unchanged"):
            for label in getattr(report, outcome):
                self.stdout.write(f"{outcome:>9}  {label}")
        for name, secret in report.new_secrets.items():
            self.stdout.write(
                self.style.WARNING(f"new secret for virtual key {name} (shown once): {secret}")
            )
        self.stdout.write(self.style.SUCCESS(report.summary()))
