"""Which URLs a webhook may call: well-formed http(s) URLs whose host is a public address.

A URL whose host is, or resolves to, a loopback, private, link-local or otherwise non-public
address is refused (unless `Settings.webhook_allow_private_hosts`, which the callers check), so
that an owner's webhook cannot probe the service's own network. `check_public_host` refuses a
host that names such an address outright, when the webhook is set; `private_host_problem`
resolves the host, just before each call. The resolved address is not pinned for the call
itself, so a receiver's DNS that changes its answer in between is not caught.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from core.services import InvalidParameterError
from core.webhook_limits import MAX_URL_LENGTH

_PRIVATE_HOST = (
    "{host} is not a public address; webhooks reach public addresses only "
    "(LILAW_WEBHOOK_ALLOW_PRIVATE_HOSTS=true allows others)"
)


def check_url(url: str) -> None:
    """An http(s) URL with a host, which httpx can call; else InvalidParameterError."""
    problem = _url_problem(url)
    if problem is not None:
        raise InvalidParameterError(f"invalid webhook URL {url[:100]!r}: {problem} (expected http(s)://host/path)")


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_LENGTH:
        return f"longer than {MAX_URL_LENGTH} characters"
    if any(character.isspace() or ord(character) < 32 or ord(character) == 127 for character in url):
        return "it contains whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port out of range
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as error:
        return str(error)
    if parts.scheme.lower() not in ("http", "https"):
        return "it must start with http:// or https://"
    if not parts.hostname:
        return "it has no host"
    return None


def check_public_host(url: str) -> None:
    """InvalidParameterError when the URL's host is `localhost` or a non-public address literal
    (a host name is resolved only when called: `private_host_problem`)."""
    host = urlsplit(url).hostname or ""
    literal = _ip(host)
    if host.lower().rstrip(".") == "localhost" or (literal is not None and not _public(literal)):
        raise InvalidParameterError(f"invalid webhook URL {url[:100]!r}: {_PRIVATE_HOST.format(host=host)}")


def private_host_problem(url: str) -> str | None:
    """Why the URL's host may not be called (it does not resolve, or resolves to a non-public
    address); None when every address it resolves to is public."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        return f"could not resolve {host}: {error}"
    private = sorted({info[4][0] for info in found if not _public(ipaddress.ip_address(info[4][0].split("%")[0]))})
    if private:
        return _PRIVATE_HOST.format(host=host if _ip(host) else f"{host} ({', '.join(private)})")
    return None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_global and not address.is_multicast
