"""The crawler's address guard, address by address: what is refused by default, what
``allow_private`` admits, and what stays refused even then (link-local, cloud metadata),
including IPv4 addresses wrapped in IPv6 (mapped, compatible, NAT64, 6to4, Teredo)."""
from __future__ import annotations

import pytest

from spark_jobs.crawl import safety

PUBLIC, PRIVATE, NEVER = "public", "private", "never"

# address -> public: fetched always; private: only with allow_private; never: refused even then.
TABLE = [
    ("8.8.8.8", PUBLIC),
    ("1.1.1.1", PUBLIC),
    ("2606:4700:4700::1111", PUBLIC),
    ("127.0.0.1", PRIVATE),
    ("10.1.2.3", PRIVATE),
    ("172.16.0.1", PRIVATE),
    ("192.168.0.1", PRIVATE),
    ("100.64.0.1", PRIVATE),  # carrier-grade NAT
    ("::1", PRIVATE),
    ("fd12:3456::1", PRIVATE),  # unique local
    # link-local and cloud metadata: never
    ("169.254.0.1", NEVER),
    ("169.254.169.254", NEVER),
    ("169.254.170.2", NEVER),
    ("fe80::1", NEVER),
    ("fe80::1%lo", NEVER),
    ("fd00:ec2::254", NEVER),
    ("100.100.100.200", NEVER),
    ("192.0.0.192", NEVER),
    # IPv4-mapped and IPv4-compatible
    ("::ffff:127.0.0.1", PRIVATE),
    ("::ffff:8.8.8.8", PUBLIC),
    ("::ffff:169.254.169.254", NEVER),
    ("::169.254.169.254", NEVER),
    ("::10.0.0.1", PRIVATE),
    # NAT64, the well-known prefix (/96) and the local-use prefix (/48 layout and last 32 bits)
    ("64:ff9b::a9fe:a9fe", NEVER),  # 169.254.169.254
    ("64:ff9b::7f00:1", PRIVATE),  # 127.0.0.1
    ("64:ff9b::a00:1", PRIVATE),  # 10.0.0.1
    ("64:ff9b:1:a9fe:a9:fe00::", NEVER),  # 169.254.169.254 at bits 48-80
    ("64:ff9b:1::a9fe:a9fe", NEVER),  # 169.254.169.254 in the last 32 bits
    ("64:ff9b:1:c0a8:0:100:a00:1", PRIVATE),  # 192.168.0.1 at bits 48-80, 10.0.0.1 in the last 32
    ("64:ff9b:1:c0a8:0:100::", NEVER),  # both readings count: the last 32 bits are 0.0.0.0
    # 6to4
    ("2002:a9fe:a9fe::1", NEVER),
    ("2002:7f00:1::1", PRIVATE),
    ("2002:c0a8:1::1", PRIVATE),
    # Teredo: the client's address is stored inverted in the last 32 bits
    ("2001:0:4136:e378:8000:63bf:5601:5601", NEVER),  # client 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", PRIVATE),  # client 10.0.0.1
    # multicast and unspecified: never fetched
    ("224.0.0.1", NEVER),
    ("ff02::1", NEVER),
    ("0.0.0.0", NEVER),
    ("::", NEVER),
]


@pytest.mark.parametrize("address, kind", TABLE, ids=[a for a, _ in TABLE])
def test_address_table(address, kind):
    assert safety.is_public_ip(address) is (kind == PUBLIC)
    assert safety.is_allowed_ip(address, allow_private=False) is (kind == PUBLIC)
    assert safety.is_allowed_ip(address, allow_private=True) is (kind != NEVER)


@pytest.mark.parametrize("address, kind", [(a, k) for a, k in TABLE if "%" not in a])
def test_check_host_on_literals(address, kind):
    expected_default = None if kind == PUBLIC else safety.PRIVATE_ADDRESS
    expected_allowed = safety.PRIVATE_ADDRESS if kind == NEVER else None
    assert safety.check_host(address, 80) == expected_default
    assert safety.check_host(address, 80, allow_private=True) == expected_allowed


def test_embedded_ipv4_is_unwrapped():
    import ipaddress

    def inner(a):
        return str(safety.embedded_ipv4(ipaddress.ip_address(a)))

    assert inner("::ffff:10.0.0.1") == "10.0.0.1"
    assert inner("64:ff9b::a9fe:a9fe") == "169.254.169.254"
    assert inner("2002:c0a8:1::1") == "192.168.0.1"
    assert inner("::10.0.0.1") == "10.0.0.1"
    assert safety.embedded_ipv4(ipaddress.ip_address("2606:4700:4700::1111")) is None
