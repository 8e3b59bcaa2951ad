"""``manage.py mock_provider``: run the mock LLM provider (see :mod:`proxy.mock_provider`)."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from proxy import mock_provider


class Command(BaseCommand):
    """Serve the mock OpenAI/Anthropic provider in the foreground."""

    help = "Run the fast mock LLM provider (OpenAI and Anthropic wire formats)."
    # The mock needs neither the database nor the app registry to be healthy.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        mock_provider.add_cli_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            mock_provider.run_from_options(options)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
