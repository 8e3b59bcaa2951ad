"""Provider base URLs into private networks are refused unless an admin
allows it for that provider: in the services, the REST API, the console and
the declarative configuration."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from keys import services
from keys.addresses import private_address_problem
from keys.declarative import ConfigError, apply_config
from keys.models import Provider
from tests.api_fixtures import ApiWorld, error_of
from tests.audit_fixtures import new_events
from tests.reliability_report import add_row

pytestmark = pytest.mark.django_db

PRIVATE = [
    "http://127.0.0.1:8000/v1",
    "http://127.1/v1",  # the resolver's short form of 127.0.0.1
    "http://2130706433/v1",  # and its integer form
    "http://0x7f000001/v1",
    "http://0.0.0.0/v1",
    "http://10.1.2.3/v1",
    "http://172.16.0.1/v1",
    "http://192.168.1.10:11434",
    "http://169.254.169.254/latest",  # cloud metadata
    "http://100.64.0.1/v1",  # carrier-grade NAT
    "http://[::1]:8000/v1",
    "http://[fe80::1]/v1",
    "http://[fd00::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://localhost:11434",
    "http://LOCALHOST./v1",
    "http://vllm.localhost/v1",
]
PUBLIC = ["https://api.openai.com/v1", "https://8.8.8.8/v1", "http://[2606:4700::1111]/v1"]


@pytest.mark.parametrize("url", PRIVATE)
def test_a_private_loopback_or_link_local_address_is_refused(url):
    assert private_address_problem(url)
    with pytest.raises(ValidationError) as caught:
        services.provider_create(name="local", kind="openai", base_url=url)
    # Refused on the field: as a private address, or (spellings the URL
    # validator does not take) as an invalid URL.
    message = caught.value.message_dict["base_url"][0]
    assert "private network" in message or message == "Enter a valid URL."
    assert not Provider.objects.exists()


@pytest.mark.parametrize("url", PUBLIC)
def test_a_public_address_is_accepted(url):
    assert private_address_problem(url) is None
    services.provider_create(name="public", kind="openai", base_url=url)


def test_a_name_resolving_to_a_private_address_is_refused():
    name = socket.gethostname()
    try:
        address = socket.getaddrinfo(name, None)[0][4][0]
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if private_address_problem(f"http://{address}/") is None:
        pytest.skip("this machine's name resolves to a public address")
    problem = private_address_problem(f"http://{name}:8000/v1")
    assert problem and "resolves to" in problem


def test_an_admin_may_allow_a_private_network_for_one_provider():
    provider = services.provider_create(
        name="ollama",
        kind="openai",
        base_url="http://10.0.0.5:11434/v1",
        allow_private_network=True,
    )
    with pytest.raises(ValidationError):
        services.provider_create(name="other", kind="openai", base_url="http://10.0.0.6/v1")
    # Taking the permission back while the URL is private is refused too.
    with pytest.raises(ValidationError):
        services.provider_update(provider=provider, allow_private_network=False)


def test_moving_a_public_provider_to_a_private_address_needs_the_permission():
    provider = services.provider_create(name="p", kind="openai", base_url="https://8.8.8.8/v1")
    with pytest.raises(ValidationError):
        services.provider_update(provider=provider, base_url="http://169.254.169.254/")
    provider.refresh_from_db()
    assert provider.base_url == "https://8.8.8.8/v1"
    with new_events() as events:
        services.provider_update(
            provider=provider, base_url="http://192.168.0.9/v1", allow_private_network=True
        )
    assert [e.action for e in events] == ["update"]
    assert events[0].after["allow_private_network"] is True


def test_the_api_refuses_it_on_the_base_url_field_and_takes_the_permission():
    world = ApiWorld()
    body = {"name": "metadata", "kind": "openai", "base_url": "http://169.254.169.254/v1"}
    refused = world.client("admin").post("/api/v1/providers/", body, format="json")
    assert refused.status_code == 400
    assert "private network" in error_of(refused)["fields"]["base_url"][0]
    allowed = world.client("admin").post(
        "/api/v1/providers/",
        {**body, "name": "vllm", "base_url": "http://10.0.0.7/v1", "allow_private_network": True},
        format="json",
    )
    assert allowed.status_code == 201, allowed.json()
    assert allowed.json()["allow_private_network"] is True
    # Providers, and so the permission, are an admin's alone.
    manager = world.client("manager").post(
        "/api/v1/providers/",
        {**body, "name": "sneaky", "base_url": "http://10.0.0.8/v1", "allow_private_network": True},
        format="json",
    )
    assert manager.status_code == 403
    add_row(
        "Security",
        "provider base URLs into private networks "
        f"({len(PRIVATE)} spellings: loopback, RFC 1918, link-local, IPv6, localhost)",
        requests=len(PRIVATE) + 3,
        client_saw="400 on `base_url` (service, API, console, configuration file) unless an "
        "admin sets `allow_private_network`",
        lost="nothing",
        mode="any",
    )


def test_the_console_form_refuses_it_on_the_base_url_field(console, who):
    data = {"name": "local", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}
    response = who.admin.post(reverse("keys:providers_new"), data)
    assert response.status_code == 400
    assert "private network" in response.context["form"].errors["base_url"][0]
    who.admin.post(reverse("keys:providers_new"), {**data, "allow_private_network": "on"})
    assert Provider.objects.get(name="local").allow_private_network


def test_the_configuration_file_needs_the_permission_too():
    document = {
        "version": 1,
        "providers": [{"name": "local", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"}],
    }
    with pytest.raises(ConfigError, match="private network"):
        apply_config(document)
    document["providers"][0]["allow_private_network"] = True
    apply_config(document)
    assert Provider.objects.get(name="local").allow_private_network
