"""Tenant-supplied URLs (status callbacks; docs/decisions/0017), without I/O: which addresses are public, what a
URL's host is, and which addresses the operator allows beyond the public ones. The database refuses bad URLs at
submission and configuration (fairlane.callback_url_problem_v1, with the same list of networks as
`NON_PUBLIC`); the callback sender checks again at send time, on every address a name resolves to.

Also `redacted`: a URL fit to print or log (no password, no query)."""

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# the same list as fairlane.non_public_networks_v1() (sql/functions/non_public_networks_v1.sql)
NON_PUBLIC: tuple[Network, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::/96", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
        "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip

# the well-known NAT64 prefix: such an address reaches the IPv4 address in its last 32 bits, which is checked
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_DNS_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_NUMERIC_LABEL = re.compile(r"(^|\.)(0x[0-9a-f]*|[0-9]+)$")
_ENDPOINT = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")


class Refused(ValueError):
    """A URL or an address a callback may not go to; the message is a fixed reason (no remote content)."""


@dataclass(frozen=True)
class Policy:
    """Where callbacks may go beyond public https URLs (`[callbacks]`: `allow_networks`, `allow_http`)."""

    allow_networks: tuple[Network, ...] = ()
    allow_http: bool = False

    @classmethod
    def of(cls, allow_networks: Iterable[str], allow_http: bool) -> "Policy":
        return cls(tuple(ipaddress.ip_network(network, strict=False) for network in allow_networks), allow_http)

    def allows(self, address: Address) -> bool:
        """Whether a callback may connect to `address`: a public one, or one of the allowed networks (a NAT64
        address is judged by the IPv4 address it reaches)."""
        if isinstance(address, ipaddress.IPv6Address) and address in NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if any(address in network for network in self.allow_networks if network.version == address.version):
            return True
        return not any(address in network for network in NON_PUBLIC if network.version == address.version)


def parse_address(host: str) -> Address | None:
    """`host` as an IP address in its canonical form (a.b.c.d, or IPv6 without a zone), else None."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address


def check_host(host: str, policy: Policy) -> Address | None:
    """The address of a host that is one (checked against `policy`), or None for a DNS name whose addresses
    the caller must resolve and check; `Refused` for anything else (forms of IPv4 addresses resolvers accept
    but people do not write, such as 2130706433 or 127.1; names that are not DNS names)."""
    address = parse_address(host)
    if address is not None:
        if not policy.allows(address):
            raise Refused(f"address {address} is not public")
        return address
    name = host.lower().rstrip(".")
    if not _DNS_NAME.match(name) or len(name) > 253:
        raise Refused("host is neither a DNS name nor an IP address")
    if _NUMERIC_LABEL.search(name):
        raise Refused("host is an IPv4 address in a non-canonical form")
    return None


def check_url(url: str, policy: Policy) -> tuple[str, int, Address | None]:
    """(host, port, its address when the host is one) of a callback URL, or `Refused`: https only (http too when
    the policy allows it), no credentials, a port in range, an IP address only when `policy.allows` it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("not a valid URL") from None
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not policy.allow_http):
        raise Refused("scheme is not allowed")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Refused("URL carries credentials")
    host = parts.hostname
    if not host:
        raise Refused("URL has no host")
    if port == 0:
        raise Refused("port 0")
    return host, port or (443 if parts.scheme == "https" else 80), check_host(host, policy)


def endpoint(url: str) -> str:
    """The endpoint of a URL, as the callback sender's circuit breaker keys it: lower-case `scheme://authority`
    (the same expression as the query postpone_endpoint in sql/queries/callbacks.sql)."""
    found = _ENDPOINT.match(url)
    return (found.group(0) if found else url).lower()


def _password_replaced(url: str, replacement: str | None) -> tuple[SplitResult, str | None]:
    """`url` split, with its password (in the authority, or a DSN's `password=` parameter) replaced by
    `replacement` (None: removed), and the password."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    password = parts.password or next((value for key, value in query if key == "password"), None)
    netloc = parts.netloc
    if parts.password:
        kept = "" if replacement is None else f":{replacement}"
        netloc = f"{parts.username or ''}{kept}@{netloc.rpartition('@')[2]}"
    query = [
        (key, value if key != "password" else replacement or "")
        for key, value in query
        if key != "password" or replacement is not None
    ]
    return parts._replace(netloc=netloc, query=urlencode(query, safe="/:*")), password


def redacted(url: str) -> str:
    """A URL fit to print or log: a password replaced by `***` (in the authority, or a DSN's `password=`
    parameter); other URLs lose their query and fragment (a DSN keeps its query, which names a socket directory
    or options)."""
    try:
        parts, _ = _password_replaced(url, "***")
        if parts.scheme not in ("postgresql", "postgres"):
            parts = parts._replace(query="")
        return urlunsplit(parts._replace(fragment=""))
    except ValueError:
        return "(an invalid URL)"


def without_password(dsn: str) -> tuple[str, str | None]:
    """A DSN without its password (authority or `password=` parameter), and the password: for a command line,
    the password going by the environment (PGPASSWORD)."""
    parts, password = _password_replaced(dsn, None)
    return urlunsplit(parts), password


def resolved_allowed(addresses: Sequence[Address], policy: Policy) -> None:
    """`Refused` unless every address a name resolved to is allowed (one private address among public ones is
    enough to refuse: the resolver's order is not ours to trust)."""
    if not addresses:
        raise Refused("name resolved to no address")
    for address in addresses:
        if not policy.allows(address):
            raise Refused(f"name resolves to {address}, an address that is not public")
