"""Where a request comes from: one answer for the callback allowlist and the limits."""

from __future__ import annotations

import functools
import ipaddress

from django.http import HttpRequest

from django_voicepassword.conf import settings

__all__ = ["client_address", "network_of", "wider_network_of"]


def client_address(request: HttpRequest) -> str | None:
    """The address the request came from, as the site's own proxy reports it.

    With ``PROXY_HEADER`` set, the last address in that header (the one the
    site's proxy added; earlier ones are whatever the sender wrote); otherwise
    the connection's address; an IPv4-mapped IPv6 address as its IPv4 address.
    ``None`` when it is not an address.
    """
    header = settings.PROXY_HEADER
    raw = request.headers.get(header, "") if header else request.META.get("REMOTE_ADDR", "")
    return _address(raw.rsplit(",", 1)[-1].strip())


@functools.lru_cache(maxsize=4096)
def _address(candidate: str) -> str | None:
    """``candidate`` as :func:`client_address` answers it; kept for the next request.

    A function of the string alone, and a site hears from few addresses at a
    time (a provider's callbacks from a handful): parsing and printing the
    address took about 5% of the callback view's time in its profile.
    Bounded: a stream of new addresses only evicts the oldest.
    """
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d; the
    # allowlist names it in IPv4, where an IPv6 address never matches.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def network_of(address: str) -> str:
    """The network one subscriber controls: the address for IPv4, its /64 for IPv6.

    An IPv6 customer is usually handed a whole /64 (often more), so limiting
    single IPv6 addresses would limit nothing.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def wider_network_of(address: str) -> str:
    """The block one party can rotate addresses in: the /24 for IPv4, the /48 for IPv6.

    An IPv6 site is usually assigned a /48 (65,536 /64s), so a limit per /64
    alone lets one customer multiply it at will; a cheap server can likewise
    hold many addresses of one IPv4 /24.
    """
    ip = ipaddress.ip_address(address)
    prefix = 48 if isinstance(ip, ipaddress.IPv6Address) else 24
    return str(ipaddress.ip_network((ip, prefix), strict=False))
