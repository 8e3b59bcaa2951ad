"""``manage.py create_api_token``: the first API token of an installation."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from audit.models import AuditEvent
from keys.models import ApiToken

pytestmark = pytest.mark.django_db


def test_it_prints_a_working_token_once_and_audits_it_as_the_command():
    get_user_model().objects.create_superuser("root")
    out = io.StringIO()

    call_command("create_api_token", "root", "bootstrap", "--expires-in-days", "7", stdout=out)

    secret = out.getvalue().strip()
    token = ApiToken.objects.get(name="bootstrap")
    assert token.expires_at is not None and not token.read_only
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/customers/").status_code == 200
    event = AuditEvent.objects.get(object_type="keys.apitoken", object_id=str(token.pk))
    assert event.actor_name == "system:create_api_token"


def test_it_refuses_an_unknown_user_or_a_taken_name():
    get_user_model().objects.create_user("vera")
    call_command("create_api_token", "vera", "ci", "--read-only", stdout=io.StringIO())

    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_token", "nobody", "x", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_token", "vera", "ci", stdout=io.StringIO())
    assert ApiToken.objects.get(name="ci").read_only
