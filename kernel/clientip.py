"""The client's IP address: the socket peer, or the right-most X-Forwarded-For entry
that is not one of our trusted proxies when (and only when) the peer is one of them.
Anything a client could forge by itself is never believed. IPv4-mapped IPv6 addresses
(``::ffff:203.0.113.9``, what a dual-stack socket reports) count as the IPv4 address."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_ip(text: str) -> Address | None:
    """An address, IPv4-mapped ones as IPv4, without an IPv6 zone id (``fe80::1%eth0``:
    not part of the address, and unbounded); None if it is not one."""
    try:
        ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _is_trusted(ip: Address | None, networks: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in network for network in networks)


def normalise_cidr(text: str) -> str:
    """A CIDR in its canonical form (``10.1.2.3/8`` -> ``10.0.0.0/8``); ValueError if it
    is not one."""
    return str(ipaddress.ip_network(text.strip(), strict=False))


def address_allowed(address: str | None, *lists: tuple[str, ...]) -> bool:
    """Whether ``address`` is inside every non-empty list of CIDRs (an empty list
    allows any address; no address passes a non-empty list)."""
    active = [cidrs for cidrs in lists if cidrs]
    if not active:
        return True
    ip = parse_ip(address or "")
    return ip is not None and all(_is_trusted(ip, _networks(cidrs)) for cidrs in active)


def peer_is_trusted_proxy(request: HttpRequest) -> bool:
    """Whether the socket peer is one of TRUSTED_PROXIES (so its forwarded headers
    count)."""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    peer = parse_ip(request.META.get("REMOTE_ADDR") or "")
    return bool(networks) and _is_trusted(peer, networks)


_MEMO = "_flashq_client_ip"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address, worked out once per request (auth, the allow-lists, the
    rate limits and the audit record each ask): remembered on the request with the two
    headers it came from, so a changed header is worked out again."""
    source = (request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))
    memo = request.__dict__.get(_MEMO)
    if memo is not None and memo[0] == source:
        return memo[1]  # type: ignore[no-any-return]
    ip = _client_ip(request)
    request.__dict__[_MEMO] = (source, ip)
    return ip


def _client_ip(request: HttpRequest) -> str | None:
    raw_peer = request.META.get("REMOTE_ADDR") or None
    if raw_peer is None:
        return None
    peer = parse_ip(raw_peer)
    if peer is None:  # e.g. a Unix socket: no address to record
        return None
    if not peer_is_trusted_proxy(request):
        return str(peer)
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    hops = [hop for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        ip = parse_ip(hop)
        if ip is None:
            return str(peer)
        if not _is_trusted(ip, networks):
            return str(ip)
    return str(peer)
