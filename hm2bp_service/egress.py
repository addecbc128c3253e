"""Where the service's outgoing requests (webhooks) may go: public addresses only.

A webhook URL is a request the service makes on a user's behalf, from inside the operator's
network. Its host is resolved and every address it resolves to is checked: loopback, private,
link-local, multicast, reserved, unspecified, shared (CGNAT), IPv4-mapped or -embedding IPv6 and
cloud-metadata addresses are refused, as are the metadata services' and ``localhost``'s names.
Any spelling of an address is covered, because the check is of what the resolver returns
(``0x7f000001``, ``2130706433``, ``127.1`` and ``0177.0.0.1`` all read as 127.0.0.1), and the
connection is then made to the address that was checked (``Destination.address``), never to a
second lookup of the name, so DNS rebinding cannot swap it in between; the request keeps the
name for its ``Host`` header and TLS SNI (so certificates are still checked against the name).

An operator allows more with ``HM2BP_WEBHOOK_ALLOWED_DESTINATIONS`` (``AllowList``): networks
(``10.20.0.0/16``, ``::1``) whose addresses are allowed, and host names that are allowed whatever
they resolve to. The check runs at submit (``refuse_unsafe_webhook``: a 422 naming ``webhook_url``)
and again before every delivery attempt (``worker.webhooks``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import Refused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# instance-metadata services of the clouds (AWS, ECS tasks, GCP, Azure, Oracle, DigitalOcean,
# Alibaba, AWS IPv6): refused by address and by name even where the name resolves elsewhere
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.169.253", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "fd00:ec2::23"))
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data",
                            "instance-data.ec2.internal", "metadata.azure.internal"})
NAT64 = ipaddress.ip_network("64:ff9b::/96")
RESOLVE_SECONDS = 5.0  # at submit; a delivery's lookup counts against its own deadline
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hm2bp-resolve")


class Blocked(Exception):
    """The destination may not be contacted; ``reason`` is short and safe to show (``private address``)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Unresolvable(Exception):
    """The host has no address (or the lookup did not answer in time)."""


@dataclass(frozen=True)
class Destination:
    """A checked destination: connect to ``address``; say ``host`` in Host and SNI."""

    scheme: str
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class AllowList:
    """Destinations the operator allows although the rules refuse them."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """``"127.0.0.0/8, ::1, hooks.lab.internal"``: comma-separated networks, addresses and host names."""
        networks, hosts = [], set()
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return host in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)


def address_refusal(address: IPAddress) -> str | None:
    """Why ``address`` is no public destination (``"loopback address"``...), or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "IPv4-mapped address"
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None) or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None)
        if embedded is not None and address_refusal(embedded) is not None:
            return "IPv4-embedding address"
    for refused, reason in ((address in METADATA_ADDRESSES, "cloud metadata address"),
                            (address.is_loopback, "loopback address"),
                            (address.is_unspecified, "unspecified address"),
                            (address.is_link_local, "link-local address"),
                            (address.is_multicast, "multicast address"),
                            (address.is_reserved, "reserved address"),
                            (address.is_private, "private address"),
                            (not address.is_global, "non-public address")):
        if refused:
            return reason
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host as the URL names it, lowercased and without brackets, port) of an http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise Blocked("not an http(s) URL", f"{url[:100]!r} is not an http(s) URL with a host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise Blocked("bad port", "the URL's port is not a number from 1 to 65535") from None
    return scheme, parts.hostname.lower().rstrip("."), port


def receiver_of(url: str) -> str:
    """The receiver a URL names, ``scheme://host:port``: deliveries are isolated per receiver."""
    try:
        scheme, host, port = split_url(url)
    except Blocked:
        return url[:512]
    return f"{scheme}://{host}:{port}"[:512]


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells directly, in any form the resolver accepts (IPv6, dotted quad,
    and inet_aton's others: ``0x7f000001``, ``2130706433``, ``127.1``, ``0177.0.0.1``), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _addresses(infos: Iterable[tuple]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if address not in found:
                found.append(address)
    return found


def choose(scheme: str, host: str, port: int, addresses: list[IPAddress], allow: AllowList) -> Destination:
    """The destination to connect to, when every address the host resolved to may be contacted
    (one refused address refuses the host: a name must not mix public and inside addresses)."""
    if not addresses:
        raise Unresolvable(host)
    if not allow.allows_host(host):
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None and not allow.allows_address(address):
                shown = "" if literal_address(host) == address else f" (it resolves to {address})"
                raise Blocked(reason, f"the host {host}{shown} is a {reason}")
    return Destination(scheme, host, port, str(addresses[0]))


def _name_refusal(host: str, allow: AllowList) -> Blocked | None:
    if allow.allows_host(host):
        return None
    if host in METADATA_NAMES:
        return Blocked("cloud metadata address", f"the host {host} is a cloud metadata service")
    if host == "localhost" or host.endswith(".localhost"):
        return Blocked("loopback address", f"the host {host} is a loopback address")
    return None


def _before_lookup(url: str, allow: AllowList) -> tuple[str, str, int, Destination | None]:
    """What ``resolve`` and ``resolve_async`` check before any lookup: the URL's scheme, host and
    port, and its destination when the host is an address literal (no lookup needed); ``Blocked``
    when the name itself is refused."""
    scheme, host, port = split_url(url)
    refused = _name_refusal(host, allow)
    if refused is not None:
        raise refused
    literal = literal_address(host)
    return scheme, host, port, None if literal is None else choose(scheme, host, port, [literal], allow)


def resolve(url: str, allow: AllowList, timeout: float = RESOLVE_SECONDS) -> Destination:
    """The checked destination of ``url`` (blocking, at most ``timeout`` seconds of lookup);
    ``Blocked`` or ``Unresolvable`` otherwise."""
    scheme, host, port, literal = _before_lookup(url, allow)
    if literal is not None:
        return literal
    lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        return choose(scheme, host, port, _addresses(lookup.result(timeout)), allow)
    except (OSError, UnicodeError, FutureTimeout):
        raise Unresolvable(host) from None


async def resolve_async(url: str, allow: AllowList) -> Destination:
    """``resolve`` on the running event loop (the caller bounds the time)."""
    scheme, host, port, literal = _before_lookup(url, allow)
    if literal is not None:
        return literal
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise Unresolvable(host) from None
    return choose(scheme, host, port, _addresses(infos), allow)


def refuse_unsafe_webhook(url: str | None, allowed: str) -> None:
    """At submit: a ``Refused`` (422 naming ``webhook_url``) unless ``url`` goes to a public
    address or one the allow-list ``allowed`` (the setting's text) permits."""
    if url is None:
        return
    hint = ("; webhooks go to public addresses only (an operator may allow others with "
            "HM2BP_WEBHOOK_ALLOWED_DESTINATIONS)")
    try:
        resolve(url, AllowList.parse(allowed))
    except Blocked as exc:
        raise Refused(f"refused: {exc.detail}{hint}", "webhook_url") from None
    except Unresolvable:
        raise Refused(f"the host {split_url(url)[1]} does not resolve to an address", "webhook_url") from None
