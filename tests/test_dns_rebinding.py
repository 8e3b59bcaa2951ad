"""A provider host name that resolved to a public address when it was saved
and resolves into a private network later (DNS rebinding) is refused when the
gateway connects, unless an admin allowed private networks for that provider.

The host name here is this machine's own, which resolves to a loopback
address; the provider's base URL is written past the save-time check, as a
DNS record changed after the save would be.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from keys import services
from keys.addresses import PrivateAddressRefused, connect_addresses
from keys.models import Provider
from tests.reliability_report import add_row


def loopback_name() -> str | None:
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    except OSError:
        return None
    loopback = addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    return name if loopback and name != "localhost" else None


NAME = loopback_name()
needs_name = pytest.mark.skipif(NAME is None, reason="this host's name is not a loopback name")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def rebind(demo, *, allow_private_network: bool) -> None:
    """The demo provider now named by a host resolving to the mock's loopback address."""
    url = demo.provider.base_url.replace("127.0.0.1", NAME)
    Provider.objects.filter(pk=demo.provider.pk).update(
        base_url=url, allow_private_network=allow_private_network
    )
    services.config_revision_bump()
    demo.sync()


def chat(demo):
    return demo.gateway.client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {demo.key}"}
    )


@needs_name
def test_a_name_rebound_to_a_loopback_address_is_refused_at_connect_time(demo):
    rebind(demo, allow_private_network=False)
    responses = [chat(demo) for _ in range(3)]
    assert [r.status_code for r in responses] == [502] * 3, responses[0].text
    assert responses[0].json()["error"]["type"] == "upstream_error"
    assert demo.mock.request_count() == 0
    add_row(
        "Security",
        "a provider host name rebound to 127.0.0.1 after it was saved (DNS rebinding)",
        requests=len(responses),
        client_saw="502 `upstream_error`; the connection is refused at connect time",
        lost="nothing; the private address is never connected to",
    )


@needs_name
def test_a_provider_allowed_into_private_networks_still_connects(demo):
    rebind(demo, allow_private_network=True)
    response = chat(demo)
    assert response.status_code == 200, response.text
    assert demo.mock.request_count() == 1


def test_only_public_addresses_of_a_name_are_connected_to():
    assert connect_addresses("api.example.com", ["93.184.216.34", "10.0.0.1"]) == ["93.184.216.34"]
    with pytest.raises(PrivateAddressRefused):
        connect_addresses("api.example.com", ["127.0.0.1", "::1", "169.254.169.254"])


def take_back_private_network(demo) -> None:
    """The permission of the demo provider (a literal 127.0.0.1 base URL) taken
    back in the database, as an admin's direct edit or a row saved before the
    save-time check existed would leave it."""
    Provider.objects.filter(pk=demo.provider.pk).update(allow_private_network=False)
    services.config_revision_bump()
    demo.sync()


def test_a_literal_private_address_is_refused_once_its_permission_is_taken_back(demo):
    assert chat(demo).status_code == 200  # saved with the permission: served
    assert demo.mock.request_count() == 1
    take_back_private_network(demo)
    responses = [chat(demo) for _ in range(3)]
    assert [r.status_code for r in responses] == [502] * 3, responses[0].text
    error = responses[0].json()["error"]
    assert error["type"] == "upstream_error"
    assert demo.mock.request_count() == 1  # nothing more reached the address
    add_row(
        "Security",
        "a provider's literal 127.0.0.1 base URL after its `allow_private_network` was taken back",
        requests=len(responses),
        client_saw="502 `upstream_error`; the connection is refused at connect time",
        lost="nothing; the private address is not connected to again",
    )
