"""The web layer's own settings, read from an environment mapping that is passed in."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import InvalidInput
from ops.settings import env_float, flag

BODY_LIMIT = 64 * 1024
SESSION_SECONDS = 12 * 3600.0
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("", "0.0.0.0", "::", "[::]")
ANY_IP = "<any IP address>"  # in allowed_hosts: every IP literal (a listener on all addresses)


def host_name(raw: str) -> str:
    """A Host header's (or a setting's) name: lower case, no port, no trailing dot, IPv6 in []."""
    text = raw.strip().lower()
    if text.startswith("["):
        name = text[: text.find("]") + 1] if "]" in text else text
    elif text.count(":") == 1:
        name = text.partition(":")[0]
    elif text.count(":") > 1:  # a bare IPv6 address, as a setting may give it
        name = f"[{text}]"
    else:
        name = text
    return name.removesuffix(".")


def is_ip(name: str) -> bool:
    """True for an IP address literal (IPv6 in brackets)."""
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def default_hosts(listen: str) -> tuple[str, ...]:
    """What the server listens on, and the loopback names.

    Listening on every address, the machine's own names and any IP address are allowed: a
    DNS-rebinding page always reaches us by a name of its own, never by an address.
    """
    name = host_name(listen)
    if name in WILDCARDS:
        names = [socket.gethostname(), socket.getfqdn()]
        return (*LOOPBACK, *dict.fromkeys(host_name(n) for n in names if n), ANY_IP)
    return tuple(dict.fromkeys((name, *LOOPBACK)))


def allowed_hosts(env: Mapping[str, str], listen: str) -> tuple[str, ...] | None:
    """IMAGECACHE_ALLOWED_HOSTS (comma-separated; `*` for any, `*.example.org` for its
    subdomains), else the default for `listen`; None means any host."""
    raw = env.get("IMAGECACHE_ALLOWED_HOSTS", "")
    if not raw.strip():
        return default_hosts(listen)
    names = [n for n in raw.replace(" ", ",").split(",") if n.strip()]
    if "*" in (n.strip() for n in names):
        return None
    hosts = tuple(dict.fromkeys(host_name(n) for n in names))
    bad = [h for h in hosts if not h or "/" in h or "*" in h.removeprefix("*.")]
    if bad:
        raise InvalidInput(
            f"IMAGECACHE_ALLOWED_HOSTS={raw!r} holds {bad[0]!r}, which is not a host name",
            hint="give host names or addresses separated by commas, e.g. localhost,photos.lan",
        )
    return hosts


@dataclass(frozen=True)
class WebSettings:
    """The API token, open reads, the body limit, the session lifetime, the allowed hosts."""

    token: str
    open_reads: bool = False
    body_limit: int = BODY_LIMIT
    session_seconds: float = SESSION_SECONDS
    hosts: tuple[str, ...] | None = LOOPBACK  # None: any Host header

    @classmethod
    def from_env(cls, env: Mapping[str, str], token: str, listen: str = "127.0.0.1") -> WebSettings:
        """The settings from `env`; `listen` is the host the server listens on."""
        return cls(
            token=token,
            open_reads=flag(env, "IMAGECACHE_OPEN_READS"),
            session_seconds=env_float(
                env, "IMAGECACHE_SESSION_SECONDS", SESSION_SECONDS, lo=1.0, hi=366 * 86400.0
            ),
            hosts=allowed_hosts(env, listen),
        )

    def host_allowed(self, header: str | None) -> bool:
        """True when a request's Host header names this server."""
        if self.hosts is None:
            return True
        if not header:
            return False
        name = host_name(header)
        if name in self.hosts or (ANY_IP in self.hosts and is_ip(name)):
            return True
        return any(h.startswith("*.") and name.endswith(h[1:]) for h in self.hosts)
