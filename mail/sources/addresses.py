"""Which IMAP servers an import may reach: a host is resolved once and every address checked,
so that an import cannot be pointed at a cloud metadata service (never), or at this machine or
its private network (only when allowed)."""

from __future__ import annotations

import ipaddress
import socket

from mail.sources.base import ImapRefused


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _said(error: BaseException) -> str:
    """An imaplib or socket error as text for a ``detail``, short."""
    return (str(error).strip() or type(error).__name__)[:300]


_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "169.254.170.2",    # AWS ECS task credentials
    "fd00:ec2::254",    # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud
))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (::ffff:a.b.c.d, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _forbidden(address: _IpAddress, *, allow_private: bool) -> str | None:
    """Why an IMAP import may not connect to ``address``, or None when it may. Cloud metadata,
    multicast, unspecified and reserved addresses never; loopback, private, link-local and
    carrier-grade NAT addresses only with ``allow_private``."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return _forbidden(embedded, allow_private=allow_private)
        address = ipaddress.IPv6Address(int(address))  # without a %scope
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata service"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_loopback:
        kind = "this machine itself (loopback)"
    elif address.is_reserved:
        return "a reserved address"
    elif address.is_link_local:
        kind = "a link-local address"
    elif isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        kind = "a carrier-grade NAT address"
    elif address.is_private or not address.is_global or (
            isinstance(address, ipaddress.IPv6Address) and address.is_site_local):
        kind = "a private network address"
    else:
        return None
    return None if allow_private else kind


_Address = tuple[int, int, int, tuple]
"""(family, type, proto, sockaddr), as ``socket.getaddrinfo`` gives them."""


def resolve_imap_host(host: str, port: int, *, allow_private_hosts: bool = False) -> list[_Address]:
    """Resolve ``host`` once and check every address it has; the addresses to connect to (and
    only to those: a name resolved again could answer differently). Raises `ImapRefused` when
    the name does not resolve or any of its addresses is one an import may not reach."""
    name = host.strip().removeprefix("[").removesuffix("]")
    where = f"{host}:{port}"
    try:
        found = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError) as error:
        raise ImapRefused(f"Could not reach an IMAP server at {where}; check the host name.",
                          f"The IMAP server name {host!r} does not resolve ({_said(error)}).") from None
    addresses: list[_Address] = []
    for family, socket_type, proto, _, sockaddr in found:
        try:
            address = ipaddress.ip_address(sockaddr[0])
        except ValueError:
            continue
        why = _forbidden(address, allow_private=allow_private_hosts)
        if why is not None:
            never = _forbidden(address, allow_private=True) is not None
            raise ImapRefused(
                f"{where} is not an IMAP server this app may connect to: imports reach only "
                "servers on the internet, not this machine or its private network.",
                f"{host} resolves to {address}, {why}; imports may not connect there"
                + ("." if never else " unless IMAP_ALLOW_PRIVATE_HOSTS is set (for an IMAP "
                   "server on this machine or a trusted private network).")) from None
        addresses.append((family, socket_type, proto, sockaddr))
    if not addresses:
        raise ImapRefused(f"Could not reach an IMAP server at {where}; check the host name.",
                          f"The IMAP server name {host!r} has no IP address.")
    return addresses
