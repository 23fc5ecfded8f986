"""PII redaction: e-mail addresses, IP addresses and phone numbers become typed placeholders.

A language model memorises strings it sees often, contact details included, so they are
replaced before anything is written: ``<EMAIL>``, ``<IP_ADDRESS>``, ``<PHONE>``. The
counts per type go to ``text_edits`` (``pii_email``, ``pii_ip_address``, ``pii_phone``)
and are summed into the clean manifest's ``pii_redactions``.

Precision matters as much as recall on technical text, so each pattern is validated:

* IP addresses must parse (``ipaddress``) and, by default, be globally routable, as in
  FineWeb/datatrove's PII formatter: 127.0.0.1, 10.x, 192.168.x and the documentation
  ranges are not personal. IPv4 needs four dotted parts, not inside a longer dotted run,
  at least two of them with two or more digits: version and section numbers (3.11.2,
  1.2.3.4.5, 3.1.1.3, "6.2.9.1. Examples") are left alone, at the cost of missing short
  addresses such as 8.8.8.8 (public resolvers, rarely personal). IPv6 needs three
  non-empty groups, so slices like ``a[1::2]`` and times like 12:30:45 are left alone.
* Phone numbers are an international ``+CC`` number, a North-American
  ``(555) 123-4567`` / ``555-123-4567`` / ``555.123.4567``, or a trunk-prefixed national
  ``020 7946 0958``, with 7..15 digits; ISO dates (2024-01-15), versions and plain long
  numbers do not match.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from spark_jobs.clean.boilerplate import add_edits

EMAIL, IP_ADDRESS, PHONE = "email", "ip_address", "phone"
PLACEHOLDERS = {EMAIL: "<EMAIL>", IP_ADDRESS: "<IP_ADDRESS>", PHONE: "<PHONE>"}

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\w)")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:)?(?![\w:])")
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}"   # +44 20 7946 0958, +49 30 1234567
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"                                       # (555) 123-4567
    r"|[2-9]\d{2}([.-])\d{3}\1\d{4}"                                      # 555-123-4567, 555.123.4567
    r"|0\d{2,4}[ -][1-9]\d{2,3}[ -]?\d{4}"                                 # 020 7946 0958, 030 1234567
    r")(?![\w.-]?\d)")


def _valid_ip(candidate: str, public_only: bool, version: int) -> bool:
    if version == 4 and sum(len(part) >= 2 for part in candidate.split(".")) < 2:
        return False  # 3.1.1.3, 6.2.9.1: versions and section numbers, not addresses
    try:
        addr = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    if addr.version != version:
        return False
    if version == 6 and sum(1 for g in candidate.split(":") if g) < 3:
        return False
    return addr.is_global if public_only else True


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


class RedactPII:
    """Map step: replace e-mails, IP addresses and phone numbers with typed placeholders."""

    name = "redact_pii"

    def __init__(self, emails: bool = True, ip_addresses: bool = True, phones: bool = True,
                 public_ips_only: bool = True, min_phone_digits: int = 7, max_phone_digits: int = 15):
        self.emails = emails
        self.ip_addresses = ip_addresses
        self.phones = phones
        self.public_ips_only = public_ips_only
        self.min_phone_digits = min_phone_digits
        self.max_phone_digits = max_phone_digits

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The redacted text and the number of replacements per type."""
        counts = {EMAIL: 0, IP_ADDRESS: 0, PHONE: 0}

        def sub(kind: str, pattern: re.Pattern, text: str, valid) -> str:
            def repl(m: re.Match) -> str:
                if not valid(m.group(0)):
                    return m.group(0)
                counts[kind] += 1
                return PLACEHOLDERS[kind]
            return pattern.sub(repl, text)

        if self.emails and "@" in text:
            text = sub(EMAIL, _EMAIL, text, lambda s: True)
        if self.ip_addresses:
            text = sub(IP_ADDRESS, _IPV4, text, lambda s: _valid_ip(s, self.public_ips_only, 4))
            if "::" in text or text.count(":") >= 7:
                text = sub(IP_ADDRESS, _IPV6, text, lambda s: _valid_ip(s, self.public_ips_only, 6))
        if self.phones:
            text = sub(PHONE, _PHONE, text,
                       lambda s: self.min_phone_digits <= _digit_count(s) <= self.max_phone_digits)
        return text, counts

    def map(self, doc: dict[str, Any]) -> dict[str, Any]:
        text, counts = self.redact(doc.get("text") or "")
        if any(counts.values()):
            doc["text"] = text
            add_edits(doc, {f"pii_{kind}": n for kind, n in counts.items()})
        return doc
