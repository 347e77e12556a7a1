"""One HTTPS POST to an address a client chose (a webhook), without letting that client
reach what only the server can: the SSRF guard.

- https only, no credentials in the URL, port 443 or an unprivileged one (1024-65535);
- the host is resolved here, at connect time, and EVERY address it resolves to is
  checked: loopback, private (RFC 1918, ULA), link-local (169.254.0.0/16 with the cloud
  metadata address, fe80::/10), CGNAT (100.64.0.0/10), unspecified, multicast, reserved
  and documentation ranges, and the IPv4 address inside an IPv4-mapped, NAT64, 6to4 or
  Teredo IPv6 one are refused, before any connection is attempted (and the ranges
  Python 3.11 still calls global: site-local fec0::/10, 192.0.0.8, 3fff::/20);
- the connection then goes to the vetted address itself (no second resolution, so a
  DNS answer that changes in between cannot rebind it), with TLS checking the
  certificate against the host name (SNI) and the Host header naming it;
- no redirects, no proxies from the environment, and a 5 s wall-clock deadline over
  the whole exchange (resolution, connect, TLS, request, headers, body: a watchdog
  shuts the socket down when it passes, however slowly the other end trickles), with
  at most ``max_bytes`` of the answer read (and dropped: only the status counts).

``allowed`` (an operator's list of host names and CIDRs) is the only way past the
address check. No Django here: the caller passes its settings."""

from __future__ import annotations

import ipaddress
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 4 * 1024
MAX_URL_LENGTH = 2000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services, named even where a range below already covers them.
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Not global, though Python 3.11's ipaddress says they are.
_ALSO_FORBIDDEN = tuple(ipaddress.ip_network(n) for n in ("fec0::/10", "192.0.0.8/32", "3fff::/20"))


class Refused(Exception):
    """The URL or an address it resolves to may not be reached; nothing was sent. Its
    message never names the address a host resolved to (``address`` does, for the
    server's log only)."""

    def __init__(self, message: str, address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.address = address


class Unreachable(Exception):
    """Connecting, TLS, sending or reading failed or took too long."""


@dataclass(frozen=True)
class Answer:
    status: int


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
    if any(address in network for network in _ALSO_FORBIDDEN):
        return "a reserved address"
    return None


def _port(url: httpx.URL) -> int:
    return 443 if url.port is None else url.port


def _port_problem(port: int) -> str | None:
    # The URL parser takes any number; the socket layer would wrap it modulo 65536.
    if not 0 < port <= 65535:
        return "has a port out of range"
    if port != 443 and port < 1024:
        return "may use port 443 or a port from 1024 up"
    return None


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
    port_problem = _port_problem(_port(parsed))
    if port_problem is not None:
        return port_problem
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


def _resolve(host: str, port: int, timeout: float) -> list[Any]:
    """getaddrinfo, given up after ``timeout`` (the lookup cannot be interrupted: it
    finishes, or times out in the resolver, in a daemon thread nobody waits for)."""
    answers: queue.SimpleQueue[list[Any] | BaseException] = queue.SimpleQueue()

    def lookup() -> None:
        try:
            answers.put(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as error:  # handed to the caller
            answers.put(error)

    threading.Thread(target=lookup, name="safehttp-resolve", daemon=True).start()
    try:
        answer = answers.get(timeout=max(timeout, 0.0))
    except queue.Empty:
        raise Unreachable(f"resolving {host} took longer than {timeout:g} s") from None
    if isinstance(answer, (OSError, UnicodeError)):
        raise Unreachable(f"cannot resolve {host}: {answer}") from answer
    if isinstance(answer, BaseException):
        raise answer
    return answer


def vetted_addresses(
    host: str, port: int, allowed: Allowed, timeout: float = TIMEOUT_SECONDS
) -> list[IPAddress]:
    """Every address ``host`` resolves to (within ``timeout``), once each, all of them
    fit to reach; or Refused naming the first that is not. An IP literal is taken as
    it is."""
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = []
        for info in _resolve(host, port, timeout):
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
            raise Refused(f"{host} resolves to {why}", address)
    return addresses


def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class _Watchdog:
    """Shuts down the connection's socket when the deadline passes: httpx's timeouts
    are per read, so a receiver trickling a byte a second would never trip them. The
    socket is learnt from httpcore's ``trace`` extension as soon as it is connected
    (by its descriptor, so the TLS handshake on it is covered too)."""

    def __init__(self, left: float) -> None:
        self._lock = threading.Lock()
        self._fds: list[int] = []
        self._done = False
        self.fired = False
        self._timer = threading.Timer(max(left, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            sock = info["return_value"].get_extra_info("socket")
            with self._lock:
                self._fds.append(sock.fileno())
                fire = self.fired
            if fire:
                self._fire()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for fd in self._fds:
                try:
                    # A duplicate of the descriptor: shutting it down ends the socket's
                    # reads and writes at once; closing the duplicate leaves the
                    # original for httpx to close.
                    with socket.socket(fileno=socket.dup(fd)) as duplicate:
                        duplicate.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        """Before the connection is closed (its descriptor may be reused after)."""
        self._timer.cancel()
        with self._lock:
            self._done = True


def _drain(response: httpx.Response, max_bytes: int) -> None:
    """Read at most ``max_bytes`` of the answer (a receiver is owed no more), unread."""
    read = 0
    for chunk in response.iter_raw():
        read += len(chunk)
        if read >= max_bytes:
            break


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
    exchange fails or is not over within ``timeout``, otherwise the answer's status
    (whatever it is, redirects included)."""
    problem = url_problem(url, allowed)
    if problem is not None:
        raise Refused(f"the URL {problem}")
    deadline = time.monotonic() + timeout
    target = httpx.URL(url)
    host = target.host
    addresses = vetted_addresses(host, _port(target), allowed, timeout)
    host_header = host if ":" not in host else f"[{host}]"
    if target.port is not None:
        host_header = f"{host_header}:{target.port}"
    late = f"the exchange took longer than {timeout:g} s"
    failure: Exception | None = None
    watchdog = _Watchdog(deadline - time.monotonic())
    try:
        with httpx.Client(
            verify=_tls_context(ca_bundle),
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,
        ) as client:
            try:
                for address in addresses:
                    left = deadline - time.monotonic()
                    if left <= 0 or watchdog.fired:
                        raise Unreachable(late)
                    request = client.build_request(
                        "POST",
                        target.copy_with(host=str(address)),
                        content=body,
                        headers={**headers, "Host": host_header},
                        extensions={"sni_hostname": host, "trace": watchdog.trace},
                        timeout=httpx.Timeout(left),
                    )
                    try:
                        response = client.send(request, stream=True)
                    except httpx.ConnectError as error:
                        failure = error  # the next address, if there is one
                        continue
                    try:
                        _drain(response, max_bytes)
                    finally:
                        response.close()
                    if watchdog.fired:
                        raise Unreachable(late)
                    return Answer(response.status_code)
            except httpx.HTTPError as error:
                if watchdog.fired:
                    raise Unreachable(late) from error
                raise Unreachable(f"{type(error).__name__}: {error}") from error
            finally:
                watchdog.stop()  # before the client closes the connection
    finally:
        watchdog.stop()
    if watchdog.fired:
        raise Unreachable(late)
    raise Unreachable(f"cannot connect to {host}: {failure or 'out of time'}")
