"""Refuse to fetch internal addresses (SSRF guard).

A crawler follows links written by strangers; a link to 169.254.169.254 or to an admin
port on localhost must not be fetched from inside a cluster. Every request (and every
redirect hop) resolves the host first and refuses private, loopback, link-local,
multicast, reserved and unspecified addresses, unless the crawl runs with
``--allow-private`` (the local demo site is on 127.0.0.1).

requests resolves the name again when it connects, so a DNS server that answers
differently the second time (DNS rebinding) would pass this check: the crawler's connections
also check the address they actually reached (:mod:`spark_jobs.crawl.connections`).
"""
from __future__ import annotations

import ipaddress
import socket

DNS_ERROR = "dns_error"
PRIVATE_ADDRESS = "private_address"


def is_public_ip(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_host(host: str, port: int, allow_private: bool = False) -> str | None:
    """None when the host may be fetched, else a reason (dns_error, private_address)."""
    if allow_private:
        return None
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return DNS_ERROR
    addresses = {info[4][0] for info in infos}
    if not addresses:
        return DNS_ERROR
    if not all(is_public_ip(a) for a in addresses):
        return PRIVATE_ADDRESS
    return None
