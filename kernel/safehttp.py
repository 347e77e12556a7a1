"""One HTTPS POST to an address a client chose (a webhook), without letting that client
reach what only the server can: the SSRF guard.

- https only, no credentials in the URL, port 443 or an unprivileged one (>= 1024);
- the host is resolved here, at connect time, and EVERY address it resolves to is
  checked: loopback, private (RFC 1918, ULA), link-local (169.254.0.0/16 with the cloud
  metadata address, fe80::/10), CGNAT (100.64.0.0/10), unspecified, multicast, reserved
  and documentation ranges, and the IPv4 address inside an IPv4-mapped, NAT64, 6to4 or
  Teredo IPv6 one are refused, before any connection is attempted;
- the connection then goes to the vetted address itself (no second resolution, so a
  DNS answer that changes in between cannot rebind it), with TLS checking the
  certificate against the host name (SNI) and the Host header naming it;
- no redirects, no proxies from the environment, a 5 s deadline, and at most
  ``max_bytes`` of the answer read.

``allowed`` (an operator's list of host names and CIDRs) is the only way past the
address check. No Django here: the caller passes its settings."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_URL_LENGTH = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services, named even where a range below already covers them.
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The URL or an address it resolves to may not be reached; nothing was sent."""


class Unreachable(Exception):
    """Connecting, TLS, sending or reading failed or took too long."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    #: The answer was longer than the cap and was cut there.
    truncated: bool = False


@dataclass(frozen=True)
class Allowed:
    """The operator's exceptions: host names reached whatever they resolve to, and
    networks whose addresses are reached."""

    names: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowed:
        names: set[str] = set()
        networks: list[Network] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        return cls(frozenset(names), tuple(networks))

    def covers(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


#: No exceptions: every address is checked.
NOTHING_ALLOWED = Allowed()


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached (None: it may)."""
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            why = forbidden(inner)
            return None if why is None else f"an IPv6 address embedding {why}"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a shared (CGNAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def _port(url: httpx.URL) -> int:
    return url.port or 443


def url_problem(url: str, allowed: Allowed = NOTHING_ALLOWED) -> str | None:
    """What is wrong with ``url`` as a delivery address (None: nothing we can see
    without resolving it). The connect-time check in ``post`` is the one that counts."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "is not a URL"
    if parsed.scheme != "https":
        return "must be an https:// URL"
    if not parsed.host:
        return "has no host"
    if parsed.userinfo:
        return "may not hold credentials"
    if parsed.fragment:
        return "may not have a #fragment"
    port = _port(parsed)
    if port != 443 and port < 1024:
        return "may use port 443 or a port from 1024 up"
    host = parsed.host.lower().rstrip(".")
    if host in allowed.names:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "may not name this host"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None
    why = forbidden(literal)
    if why is not None and not allowed.covers(literal):
        return f"may not name {why}"
    return None


def vetted_addresses(host: str, port: int, allowed: Allowed) -> list[IPAddress]:
    """Every address ``host`` resolves to, once each, all of them fit to reach; or
    Refused naming the first that is not. An IP literal is taken as it is."""
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as error:
            raise Unreachable(f"cannot resolve {host}: {error}") from error
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise Unreachable(f"{host} resolves to no address")
    if host.lower().rstrip(".") in allowed.names:
        return addresses
    for address in addresses:
        why = forbidden(address)
        if why is not None and not allowed.covers(address):
            raise Refused(f"{host} resolves to {why} ({address})")
    return addresses


def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> Answer:
    body = bytearray()
    truncated = False
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            truncated = True
            break
        if time.monotonic() > deadline:
            raise Unreachable(f"the answer took longer than {TIMEOUT_SECONDS:g} s")
    return Answer(response.status_code, bytes(body[:max_bytes]), truncated)


def post(
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    allowed: Allowed = NOTHING_ALLOWED,
    ca_bundle: str = "",
    timeout: float = TIMEOUT_SECONDS,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Answer:
    """POST ``body`` to ``url`` under the rules above: Refused before any connection
    when the URL or an address of its host may not be reached, Unreachable when the
    exchange fails, otherwise the answer (whatever its status, redirects included)."""
    problem = url_problem(url, allowed)
    if problem is not None:
        raise Refused(f"the URL {problem}")
    target = httpx.URL(url)
    host = target.host
    addresses = vetted_addresses(host, _port(target), allowed)
    host_header = host if ":" not in host else f"[{host}]"
    if target.port is not None:
        host_header = f"{host_header}:{target.port}"
    deadline = time.monotonic() + timeout
    failure: Exception | None = None
    with httpx.Client(
        verify=_tls_context(ca_bundle),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    ) as client:
        for address in addresses:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            request = client.build_request(
                "POST",
                target.copy_with(host=str(address)),
                content=body,
                headers={**headers, "Host": host_header},
                extensions={"sni_hostname": host},
                timeout=httpx.Timeout(left),  # one deadline across the addresses tried
            )
            try:
                response = client.send(request, stream=True)
            except httpx.ConnectError as error:
                failure = error  # the next address, if there is one
                continue
            except httpx.HTTPError as error:
                raise Unreachable(f"{type(error).__name__}: {error}") from error
            try:
                return _read_capped(response, max_bytes, deadline)
            except httpx.HTTPError as error:
                raise Unreachable(f"{type(error).__name__}: {error}") from error
            finally:
                response.close()
    raise Unreachable(f"cannot connect to {host}: {failure or 'out of time'}")
