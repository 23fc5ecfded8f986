"""Refuse to fetch internal addresses (SSRF guard).

A crawler follows links written by strangers; a link to 169.254.169.254 or to an admin
port on localhost must not be fetched from inside a cluster. Every request (and every
redirect hop) resolves the host first and refuses every address that is not global
unicast: private, loopback, link-local, multicast, reserved, unspecified.

``--allow-private`` (the ``allow_private`` Param, off by default) admits private and
loopback addresses: the local demo site is on 127.0.0.1. Link-local addresses
(169.254.0.0/16, fe80::/10) and the cloud metadata endpoints (:data:`METADATA`) stay refused
even then: no crawl needs them, and they hand out cloud credentials.

IPv6 addresses that carry an IPv4 address (IPv4-mapped and -compatible, NAT64
``64:ff9b::/96`` and ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo ``2001::/32``) are judged
by the IPv4 address inside: ``64:ff9b::a9fe:a9fe`` reaches 169.254.169.254 through a NAT64
gateway, although Python's ``is_global`` calls it global.

requests resolves the name again when it connects, so a DNS server that answers
differently the second time (DNS rebinding) would pass this check: the crawler's connections
also check the address they actually reached (:mod:`spark_jobs.crawl.connections`).
"""
from __future__ import annotations

import ipaddress
import socket

DNS_ERROR = "dns_error"
PRIVATE_ADDRESS = "private_address"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud instance-metadata endpoints outside the link-local ranges (refused always).
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "169.254.170.2",  # AWS ECS task credentials
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd00:ec2::23",  # AWS DNS resolver over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud
))
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo), or None."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address: where the packets end up
    if any(ip in net for net in NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # RFC 6052's /96 layout: the last 32 bits
    if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routable)
        return ipaddress.IPv4Address(int(ip))
    return None


def _nat64_local_48(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """64:ff9b:1::/48 (RFC 8215) is for local-use translators with any prefix length; with /48 the
    IPv4 address sits in bits 48-80 (RFC 6052 layout, octets around the reserved u-byte)."""
    if ip not in NAT64[1]:
        return None
    b = ip.packed
    return ipaddress.IPv4Address(b[6:9] + b[10:11])


def _addresses(address: str) -> list[IPAddress]:
    """The address and every IPv4 address it may stand for."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    out: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in (embedded_ipv4(ip), _nat64_local_48(ip)):
            if inner is not None:
                out.append(inner)
    return out


def is_never_allowed(address: str) -> bool:
    """Link-local or a cloud metadata endpoint, also wrapped in IPv6: refused even with allow_private."""
    return any(ip in METADATA or ip.is_link_local for ip in _addresses(address))


def is_public_ip(address: str) -> bool:
    """Global unicast, and so is every IPv4 address it carries."""
    if is_never_allowed(address):
        return False
    return all(ip.is_global and not ip.is_multicast for ip in _addresses(address))


def is_allowed_ip(address: str, allow_private: bool = False) -> bool:
    """Whether the crawler may connect to ``address``: public, or with ``allow_private`` anything
    but link-local, metadata, multicast and unspecified addresses."""
    if not allow_private:
        return is_public_ip(address)
    if is_never_allowed(address):
        return False
    return not any(ip.is_multicast or ip.is_unspecified for ip in _addresses(address))


def check_host(host: str, port: int, allow_private: bool = False) -> str | None:
    """None when the host may be fetched, else a reason (dns_error, private_address)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return DNS_ERROR
    addresses = {info[4][0] for info in infos}
    if not addresses:
        return DNS_ERROR
    if not all(is_allowed_ip(a, allow_private) for a in addresses):
        return PRIVATE_ADDRESS
    return None

