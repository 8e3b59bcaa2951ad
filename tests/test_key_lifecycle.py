"""Key rotation with a grace period, IP allow lists, and anonymous access."""

from __future__ import annotations

import datetime as dt
import time

import openai
import pytest

from governance import services as governance
from keys import services
from keys.models import VirtualKey
from tests.conftest import gateway_env
from tests.processes import GatewayProcess

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def status(gateway, key: str | None, **headers: str) -> int:
    if key:
        headers["authorization"] = f"Bearer {key}"
    return gateway.client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code


def test_a_rotated_key_keeps_its_old_secret_working_until_the_grace_ends(demo):
    key = VirtualKey.objects.get(name="platform-app")
    _, new_secret = services.virtual_key_rotate(key=key, grace=dt.timedelta(seconds=2))
    demo.sync()
    assert new_secret != demo.key
    assert status(demo.gateway, new_secret) == 200
    assert status(demo.gateway, demo.key) == 200
    time.sleep(2.1)
    assert status(demo.gateway, demo.key) == 403
    assert status(demo.gateway, new_secret) == 200


def test_a_rotation_with_no_grace_retires_the_old_secret_at_once(demo):
    key = VirtualKey.objects.get(name="platform-app")
    _, new_secret = services.virtual_key_rotate(key=key, grace=dt.timedelta(0))
    demo.sync()
    assert status(demo.gateway, demo.key) == 403
    assert status(demo.gateway, new_secret) == 200


def test_a_revoked_key_cannot_be_rotated(demo):
    key = services.virtual_key_revoke(key=VirtualKey.objects.get(name="platform-app"))
    with pytest.raises(services.ServiceError):
        services.virtual_key_rotate(key=key)


def test_an_ip_allow_list_admits_listed_addresses_only(demo):
    key = VirtualKey.objects.get(name="platform-app")
    services.virtual_key_update(key=key, allowed_ips=["10.0.0.0/8"])
    demo.sync()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        demo.openai().chat.completions.create(**CHAT)
    assert caught.value.body["code"] == "ip_not_allowed"
    services.virtual_key_update(key=key, allowed_ips=["10.0.0.0/8", "127.0.0.1"])
    demo.sync()
    assert status(demo.gateway, demo.key) == 200


def test_a_forwarded_address_counts_only_from_a_trusted_proxy(demo):
    key = VirtualKey.objects.get(name="platform-app")
    services.virtual_key_update(key=key, allowed_ips=["203.0.113.0/24"])
    demo.sync()
    # The test gateway trusts its own host (uvicorn's default) as a proxy.
    assert status(demo.gateway, demo.key, **{"x-forwarded-for": "203.0.113.5"}) == 200
    # A hop forged left of what the trusted proxy saw does not help.
    forged = {"x-forwarded-for": "203.0.113.5, 198.51.100.7"}
    assert status(demo.gateway, demo.key, **forged) == 403
    no_proxy = GatewayProcess(gateway_env(FORWARDED_ALLOW_IPS="192.0.2.1"))
    try:
        no_proxy.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        # Nobody is trusted: the header is only the client's word.
        assert status(no_proxy, demo.key, **{"x-forwarded-for": "203.0.113.5"}) == 403
    finally:
        no_proxy.close()


def test_an_invalid_allow_list_is_refused(demo):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        services.virtual_key_update(
            key=VirtualKey.objects.get(name="platform-app"), allowed_ips=["nope"]
        )


def test_without_enforcement_a_keyless_request_runs_under_the_default_team(demo):
    governance.rate_limit_create(owner=demo.team, metric="requests", limit=2, window_seconds=3600)
    open_gateway = GatewayProcess(
        gateway_env(GATEWAY_ENFORCE_GOVERNANCE_HEADER="false", GATEWAY_DEFAULT_TEAM="platform")
    )
    try:
        open_gateway.wait_for_revision(demo.gateway.client.get("/readyz").json()["config_revision"])
        assert [status(open_gateway, None) for _ in range(3)] == [200, 200, 429]
        # A presented key is still checked.
        assert status(open_gateway, "sk-gw-" + "x" * 48) == 401
    finally:
        open_gateway.close()


def test_the_enforcement_switch_needs_a_default_team():
    import subprocess
    import sys

    from tests.processes import ROOT

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={
            **gateway_env(),
            "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
            "GATEWAY_ENFORCE_GOVERNANCE_HEADER": "false",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "GATEWAY_DEFAULT_TEAM" in result.stderr
