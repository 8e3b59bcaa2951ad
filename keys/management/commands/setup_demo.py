"""``manage.py setup_demo``: the demo of ``make run`` (development only).

Keeps the demo's credentials in ``var/demo.json`` (created once, mode 600) so
that every run prints the same admin password and virtual key, then applies
``config/demo.yaml`` through the declarative configuration.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from audit.context import system_actor
from keys import tokens
from keys.declarative import ConfigError, apply_config, load_file

DEMO_CONFIG = Path(settings.BASE_DIR) / "config" / "demo.yaml"


class Command(BaseCommand):
    help = "Create the demo admin user, team, virtual key and mock provider."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--mock-url", default="http://127.0.0.1:9100/v1")
        parser.add_argument("--console-url", default="http://127.0.0.1:8000/")

    @system_actor("setup_demo")
    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("the demo is for development; GATEWAY_ENV is production")
        credentials = self._credentials()
        os.environ["GATEWAY_DEMO_KEY"] = credentials["virtual_key"]
        os.environ["GATEWAY_DEMO_PROVIDER_KEY"] = credentials["provider_key"]
        document = load_file(str(DEMO_CONFIG))
        document["providers"][0]["base_url"] = options["mock_url"]
        try:
            report = apply_config(document)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None

        user_model = get_user_model()
        admin = user_model.objects.filter(username="admin").first()
        if admin is None:
            user_model.objects.create_superuser(
                "admin", "admin@example.com", credentials["admin_password"]
            )
        elif not admin.check_password(credentials["admin_password"]):
            admin.set_password(credentials["admin_password"])
            admin.save(update_fields=["password"])

        url = options["console_url"]
        self.stdout.write(
            "\n".join(
                [
                    f"demo configuration: {report.summary()}",
                    f"console:      {url}console/ (Django admin: {url}admin/)",
                    "admin user:   admin",
                    f"password:     {credentials['admin_password']}",
                    f"virtual key:  {credentials['virtual_key']}",
                    "models:       gpt-4o-mini, demo-chat "
                    f"(mock provider at {options['mock_url']})",
                    "try it:",
                    f"  curl {url}v1/chat/completions \\",
                    f"    -H 'Authorization: Bearer {credentials['virtual_key']}' \\",
                    "    -H 'Content-Type: application/json' \\",
                    '    -d \'{"model": "gpt-4o-mini", '
                    '"messages": [{"role": "user", "content": "Hello"}]}\'',
                ]
            )
        )

    def _credentials(self) -> dict[str, str]:
        path = Path(settings.VAR_DIR) / "demo.json"
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        credentials = {
            "admin_password": secrets.token_urlsafe(12),
            "virtual_key": tokens.generate_key(),
            "provider_key": "mock-" + secrets.token_hex(8),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(credentials, indent=2), encoding="utf-8")
        path.chmod(0o600)
        return credentials
