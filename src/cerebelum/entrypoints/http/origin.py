"""Cross-site refusals: the `Host` a request names and the `Origin` a browser sends.

A server on loopback needs no token, so any web page the operator visits
could otherwise drive it: a cross-site `POST` (even a "simple" `text/plain`
one, which a browser sends without asking) or a DNS-rebound name that makes
the page same-origin with the server (interaction.md section 12). So:

- every request (but the health checks) must name, in `Host`, a host the server
  answers to: `cerebelum serve --allowed-host H` (repeatable), by default the
  bound address, `localhost`, `127.0.0.1` and `[::1]` with the server's port;
  anything else is 403 `forbidden_host`;
- a request that changes state (POST, PUT, PATCH, DELETE) with an `Origin`
  header that is not the server's own (its host and port are those of `Host`,
  or one of the allowed hosts) is 403 `forbidden_origin`. Without `Origin`
  (curl, scripts, the CLI) nothing changes: browsers always send it on such
  requests from another site.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from cerebelum.entrypoints.http.errors import error_response

ANY_HOST = "*"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})  # probes name the pod's address: they reveal nothing
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(authority: str) -> tuple[str, int | None]:
    """`host[:port]` (IPv6 in brackets, or bare) as (lower-case host, port or None).
    The host of an IPv6 address keeps its brackets; a bad port makes the whole
    value a host name that matches nothing."""
    value = authority.strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        host += "]"
        if not rest:
            return host, None
        port = rest[1:] if rest.startswith(":") else "x"
    elif value.count(":") > 1:  # a bare IPv6 address
        return f"[{value}]", None
    else:
        host, sep, port = value.partition(":")
        if not sep:
            return host, None
    if not port.isdigit() or len(port) > 5:
        return value + "\0", None  # no allowed host can equal this
    return host, int(port)


def default_allowed_hosts(address: str, port: int) -> list[str]:
    """What `serve --host ADDRESS --port PORT` answers to when no --allowed-host is given:
    the bound address and the loopback names, with the port. A wildcard address
    (0.0.0.0, ::) answers to any name (a server off loopback needs tokens anyway)."""
    if address.strip() in WILDCARD_ADDRESSES:
        return [ANY_HOST]
    try:
        bound = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        bound = address
    names = [bound, "localhost", "127.0.0.1", "[::1]"]
    unique = list(dict.fromkeys(name.lower() for name in names))
    return unique if port == 0 else [f"{name}:{port}" for name in unique]


class AllowedHosts:
    """Entries `host` (any port), `host:port`, or `*` (any host at all)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.any = False
        self.exact: set[tuple[str, int | None]] = set()
        self.any_port: set[str] = set()
        for entry in entries:
            if entry.strip() == ANY_HOST:
                self.any = True
                continue
            host, port = split_host(entry)
            if port is None:
                self.any_port.add(host)
            else:
                self.exact.add((host, port))

    def __contains__(self, authority: object) -> bool:
        if not isinstance(authority, str):
            return False
        if self.any:
            return True
        host, port = split_host(authority)
        return host in self.any_port or (host, port) in self.exact or (port is None and (host, 80) in self.exact)

    def named(self, authority: str) -> bool:
        """Listed explicitly (a `*` does not count: it says nothing about origins)."""
        host, port = split_host(authority)
        return host in self.any_port or (host, port) in self.exact


def _origin_authority(origin: str) -> str | None:
    """`scheme://host[:port]` as `host[:port]` with the scheme's default port dropped; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host if port is None or port == DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"


def _same_authority(a: str, b: str) -> bool:
    host_a, port_a = split_host(a)
    host_b, port_b = split_host(b)
    if host_a != host_b:
        return False
    # a missing port is the scheme's default: 80 or 443 (a TLS proxy in front changes the scheme, not the name)
    return port_a == port_b or {port_a, port_b} <= {None, 80, 443}


class SameOriginMiddleware:
    """403 for a `Host` the server does not answer to (when `allowed_hosts` is
    given) and for a state-changing request from another origin (always)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.hosts = AllowedHosts(allowed_hosts) if allowed_hosts is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        host: str | None = None
        origin: str | None = None
        for name, value in scope.get("headers") or ():
            if name == b"host" and host is None:
                host = value.decode("latin-1")
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
        if self.hosts is not None and (host is None or host not in self.hosts):
            message = "this server does not answer to that Host (see cerebelum serve --allowed-host)"
            await error_response(403, "forbidden_host", message)(scope, receive, send)
            return
        if origin is not None and scope.get("method", "GET").upper() in STATE_CHANGING and not self._own(origin, host):
            message = "a request that changes state must come from the server's own origin (cross-site request refused)"
            await error_response(403, "forbidden_origin", message)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _own(self, origin: str, host: str | None) -> bool:
        authority = _origin_authority(origin)  # "null" (sandboxed frames, file://) and junk: None
        if authority is None:
            return False
        if host is not None and _same_authority(authority, host):
            return True
        return self.hosts is not None and self.hosts.named(authority)
