"""Settings come from the environment; production refuses insecure ones."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT

GOOD_SECRET = "a" * 20 + "B" * 20 + "9" * 20


def load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GATEWAY_"))}
    clean.pop("DEBUG", None)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DEBUG, settings.PRODUCTION, settings.SECRET_KEY[:6], "
            "settings.ALLOWED_HOSTS, settings.GATEWAY_METRICS_PUBLIC)",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "gateway_project.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = load_settings(GATEWAY_ENV="production", GATEWAY_ENCRYPTION_KEY=GOOD_SECRET)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_or_development_secret():
    for secret in ("short", "insecure-" + "x" * 60):
        result = load_settings(
            GATEWAY_ENV="production", DJANGO_SECRET_KEY=secret, GATEWAY_ENCRYPTION_KEY=GOOD_SECRET
        )
        assert result.returncode != 0
        assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_an_encryption_key():
    result = load_settings(GATEWAY_ENV="production", DJANGO_SECRET_KEY=GOOD_SECRET)
    assert result.returncode != 0
    assert "GATEWAY_ENCRYPTION_KEY must be set" in result.stderr


def test_production_refuses_debug_and_wildcard_hosts():
    base = {
        "GATEWAY_ENV": "production",
        "DJANGO_SECRET_KEY": GOOD_SECRET,
        "GATEWAY_ENCRYPTION_KEY": GOOD_SECRET,
    }
    assert "DEBUG must be off" in load_settings(**base, DEBUG="true").stderr
    assert "ALLOWED_HOSTS" in load_settings(**base, ALLOWED_HOSTS="*").stderr


def test_production_starts_with_real_secrets_read_from_files(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(GOOD_SECRET + "\n")
    result = load_settings(
        GATEWAY_ENV="production",
        DJANGO_SECRET_KEY_FILE=str(secret_file),
        GATEWAY_ENCRYPTION_KEY_FILE=str(secret_file),
        ALLOWED_HOSTS="gateway.example.com",
    )
    assert result.returncode == 0, result.stderr
    # /metrics is closed in production until a token is set.
    assert result.stdout.split() == [
        "False",
        "True",
        "aaaaaa",
        "['gateway.example.com']",
        "False",
    ]


def test_a_file_variable_wins_over_the_plain_one(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-the-file-" + GOOD_SECRET)
    result = load_settings(DJANGO_SECRET_KEY="from-env", DJANGO_SECRET_KEY_FILE=str(secret_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[2] == "from-t"


def test_a_malformed_boolean_is_refused():
    result = load_settings(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr
