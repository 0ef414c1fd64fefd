"""Where the hub may send requests: the fleet's outbound policy (pure; callers resolve names).

Webhook URLs come from canaries anyone with push access writes; alert and metrics URLs from the
Fleet. Without a policy they could make the hub POST to an Envoy admin on its own network or to a
cloud metadata service. The rules (docs/limits.md):

- never: the admin endpoints of the fleet's own Envoys (the edge's and each zone ingress's admin
  port, on any loopback or unspecified address when they listen there) — the hub talks to them
  itself, never on a canary's behalf;
- link-local addresses (169.254.0.0/16, fe80::/10, so the metadata address 169.254.169.254), the
  other metadata addresses and unspecified addresses: only when ``spec.outbound.allow`` names a
  network that contains them;
- with ``spec.outbound.allow`` set, only addresses in its networks or hosts matching its names
  (``hooks.example.com``, ``*.example.com``); without it, anything else;
- credentials in a URL are refused at validation (use the auth fields) and redacted when printed.

Callers: ``core.spec`` (validation of URLs and the allow list), ``notify`` and ``metrics`` (each
request, after resolving its host).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA = tuple(ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254",
                                                    "100.100.100.200"))


def url_problem(url: str, *, schemes: tuple[str, ...] = ("http", "https"), user_ok: bool = False) -> str | None:
    """Why ``url`` cannot be used (never repeating its userinfo), else None."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in schemes:
        return f"must start with {' or '.join(s + '://' for s in schemes)}"
    if not parts.hostname:
        return "has no host"
    if parts.password is not None or (parts.username is not None and not user_ok):
        return "credentials in the URL are refused (give them in the auth fields, by environment or file)"
    if any(c in url for c in "\x00\r\n\t "):
        return "contains whitespace or control characters"
    return None


def redact(url: str) -> str:
    """``url`` without its userinfo, for logs, reasons, alerts and commit messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def allow_entry_problem(entry: str) -> str | None:
    """Why an ``outbound.allow`` entry is neither a network/address nor a host name pattern."""
    try:
        ipaddress.ip_network(entry, strict=False)
        return None
    except ValueError:
        pass
    name = entry[2:] if entry.startswith("*.") else entry
    labels = name.split(".")
    if not name or len(name) > 253 or not all(labels) or not all(
            len(x) <= 63 and x.replace("-", "").isalnum() and x.isascii() for x in labels):
        return f"{entry!r} is neither a CIDR, an IP address nor a host name (or *.domain)"
    return None


@dataclass(frozen=True)
class Policy:
    allow: tuple[str, ...] = ()
    admin: frozenset[tuple[str, int]] = field(default_factory=frozenset)  # (host or address, port)

    @property
    def networks(self) -> list[Network]:
        return [ipaddress.ip_network(a, strict=False) for a in self.allow if _is_network(a)]

    @property
    def names(self) -> list[str]:
        return [a.lower() for a in self.allow if not _is_network(a)]

    def _is_admin(self, host: str, ip: Address, port: int) -> bool:
        for name, p in self.admin:
            if p != port:
                continue
            if name.lower() == host.lower():
                return True
            try:
                addr = ipaddress.ip_address(name)
            except ValueError:
                continue
            if ip == addr or ((addr.is_loopback or addr.is_unspecified) and (ip.is_loopback or ip.is_unspecified)):
                return True
        return False

    def check(self, host: str, port: int, addresses: Iterable[str]) -> str | None:
        """Why a request to ``host``:``port`` (resolving to ``addresses``) is refused, else None."""
        by_name = any(fnmatch.fnmatchcase(host.lower(), n) for n in self.names)
        ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
        if not ips:
            return f"{host} does not resolve"
        nets = self.networks
        for ip in ips:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            if self._is_admin(host, ip, port):
                return f"{host}:{port} is an admin endpoint of the fleet's own Envoys"
            listed = any(ip in n for n in nets)
            if (ip.is_link_local or ip in METADATA or ip.is_unspecified) and not listed:
                return f"{host} resolves to {ip}, a link-local or metadata address (not in spec.outbound.allow)"
            if self.allow and not (listed or by_name):
                return f"{host} ({ip}) is not in the fleet's spec.outbound.allow"
        return None


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        return False
