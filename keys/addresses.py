"""Whether a provider's base URL points into a private network.

The gateway calls its providers from inside the operator's network, so a
base URL naming a loopback, private, link-local (cloud metadata) or other
non-public address would let whoever configures providers reach services
that are not meant to be reachable. Such URLs are refused unless an admin
allows it for that provider (``Provider.allow_private_network``: a
self-hosted vLLM or Ollama).

What is checked, when a provider is saved: literal addresses in every
spelling the resolver accepts (``127.1``, ``0x7f000001``, ``2130706433``,
IPv4-mapped IPv6), ``localhost`` and its subdomains, and the addresses a
host name resolves to at that moment. A name that does not resolve then is
accepted. The check does not follow the name afterwards: a DNS record
changed later (rebinding) is not caught here; egress rules of the network
remain the guard for that.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # The resolver's lenient IPv4 forms: 127.1, 0x7f.1, 2130706433.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _kind(address: Address) -> str | None:
    """What makes ``address`` non-public, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback"
    if address.is_link_local:
        return "a link-local"
    if address.is_unspecified:
        return "an unspecified"
    if address.is_multicast:
        return "a multicast"
    if address.is_private:
        return "a private"
    if not address.is_global:
        return "a reserved"
    return None


def _resolve(host: str) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def private_address_problem(url: str) -> str | None:
    """Why ``url`` points into a private network, or None when it does not."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return None  # not a URL: the field's own validation says so
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return f"'{host}' is this machine"
    literal = _literal(host)
    addresses = [literal] if literal is not None else _resolve(host)
    for address in addresses:
        kind = _kind(address)
        if kind is not None:
            named = "" if literal is not None else f"'{host}' resolves to "
            return f"{named}{address} is {kind} address"
    return None
