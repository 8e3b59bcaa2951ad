"""``manage.py create_api_token USER NAME``: an admin API token, printed once.

The first token of an installation has to come from somewhere other than
the API itself; later ones can be made at ``/api/v1/api-tokens/``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit.context import system_actor
from keys import services


class Command(BaseCommand):
    help = "Create a REST API token acting as USER and print it (it is not shown again)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("user", help="the username the token acts as")
        parser.add_argument("name", help="the token's name, e.g. ci-deploy")
        parser.add_argument("--read-only", action="store_true", help="reads only")
        parser.add_argument("--expires-in-days", type=int, help="expire after this many days")

    @system_actor("create_api_token")
    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user named {options['user']!r}")
        days = options.get("expires_in_days")
        expires_at = timezone.now() + dt.timedelta(days=days) if days else None
        try:
            _, secret = services.api_token_create(
                user=user,
                name=options["name"],
                read_only=options["read_only"],
                expires_at=expires_at,
            )
        except (ValidationError, services.ServiceError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(secret)
