"""The console shows the runtime settings in force, the seed's client
settings among them, to admins and viewers only."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_admins_and_viewers_see_the_settings_in_force(console, who, settings):
    settings.GATEWAY_INITIAL_POOL_SIZE = 123
    settings.GATEWAY_DROP_EXCESS_REQUESTS = True
    url = reverse("governance:runtime_settings")
    for client in (who.admin, who.viewer):
        page = client.get(url)
        assert page.status_code == 200
        text = page.content.decode()
        for name in (
            "initialPoolSize",
            "dropExcessRequests",
            "enableLogging",
            "enforceGovernanceHeader",
        ):
            assert name in text
        assert "<td>123</td>" in text
        assert "<td>True</td>" in text
    assert b"Settings" in who.admin.get(reverse("governance:dashboard")).content


def test_others_may_not(console, who):
    url = reverse("governance:runtime_settings")
    assert who.manager.get(url).status_code == 403
    assert b">Settings<" not in who.manager.get(reverse("governance:dashboard")).content
