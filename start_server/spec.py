"""Pure parsing: the ``--port`` grammar, signal names, counts, sizes; the env string.

Nothing here touches the OS (host names are resolved when binding), so every
rule is a fast unit test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from dataclasses import dataclass, field

from .values import SpecError, is_decimal, parse_whole

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional, Union

# The original's two regexes (Server::Starter 0.35), as loose on white space
# as they are and no looser: ASCII digits and white space (the original reads
# bytes), a greedy host, no blank after "=". What they accept, we accept;
# what they refuse, or accept but cannot bind (an empty host, white space in
# it, an IPv6 address inet_pton refuses), we refuse at once.
_PLAIN = re.compile(r"^\s*(u?)(\d+)(?:\s*=(\d+))?\s*$", re.ASCII)
_HOSTED = re.compile(
    r"^\s*(?:\[\s*|)([^\]]*)\s*(?:\]\s*|):\s*(u?)(\d+)(?:\s*=(\d+))?\s*$", re.ASCII
)
# The highest fd an =FD may name: a C int (the open-files limit is checked when placing it).
MAX_FD = 2**31 - 1


@dataclass(frozen=True)
class PortSpec:
    """One ``--port`` value: where to bind, TCP or UDP, and an optional fixed fd."""

    port: int
    host: Optional[str] = None  # None: 0.0.0.0, IPv4 only, as the original does
    udp: bool = False
    fd: Optional[int] = None
    ipv6: bool = False
    raw: str = field(default="", compare=False)  # as the user wrote it, for messages
    port_text: str = field(default="", compare=False)  # digits as written: "08080"

    @property
    def key(self) -> str:
        """The key in ``SERVER_STARTER_PORT``; the original drops the ``u``."""
        port = self.port_text or str(self.port)  # the original keeps the digits as typed
        if self.host is None:
            return port
        if self.ipv6:
            return f"[{self.host}]:{port}"
        return f"{self.host}:{port}"

    @property
    def bind_host(self) -> str:
        return "0.0.0.0" if self.host is None else self.host


@dataclass(frozen=True)
class PathSpec:
    """One ``--path`` value: a unix stream socket; the key is the path as given."""

    path: str

    @property
    def key(self) -> str:
        return self.path



def _port_number(text: str, raw: str) -> int:
    try:
        return parse_whole(text, maximum=65535)
    except SpecError:
        raise SpecError(f"port {text} out of range 0-65535 in {raw!r}") from None


def _fd_number(text: Optional[str], raw: str) -> Optional[int]:
    if text is None:
        return None
    try:
        return parse_whole(text, maximum=MAX_FD)
    except SpecError:
        raise SpecError(f"fd {text} out of range 0-{MAX_FD} in {raw!r}") from None


def _is_ipv6(host: str) -> bool:
    """What the original's ``inet_pton(AF_INET6, host)`` accepts (no scope id)."""
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return False
    return True


def parse_port(raw: str) -> PortSpec:
    """Parse ``PORT``, ``HOST:PORT``, ``[HOST]:PORT``, each with ``u`` and ``=FD``.

    The original's grammar exactly: brackets may hold any host (``[127.0.0.1]``)
    and, as there, an unbalanced one is tolerated (``[::1:80`` binds ``[::1]:80``).
    """
    m = _PLAIN.match(raw)
    if m:
        udp, port, fd = m.groups()
        return PortSpec(
            port=_port_number(port, raw),
            udp=bool(udp),
            fd=_fd_number(fd, raw),
            raw=raw.strip(),
            port_text=port,
        )
    m = _HOSTED.match(raw)
    if not m:
        raise SpecError(
            f"invalid port spec {raw!r} (expected PORT, HOST:PORT or [IPV6]:PORT, "
            "a 'u' before the port for UDP, an optional =FD)"
        )
    host, udp, port, fd = m.groups()
    if not host:
        raise SpecError(f"invalid port spec {raw!r}: empty host")
    ipv6 = ":" in host
    if ipv6 and not _is_ipv6(host):
        raise SpecError(f"invalid IPv6 address {host!r} in {raw!r}")
    if not ipv6 and (re.search(r"\s", host) or not host.isprintable()):
        raise SpecError(f"invalid host {host!r} in {raw!r}")
    return PortSpec(
        port=_port_number(port, raw),
        host=host,
        udp=bool(udp),
        fd=_fd_number(fd, raw),
        ipv6=ipv6,
        raw=raw.strip(),
        port_text=port,
    )


def check_fd_collisions(ports: list[PortSpec]) -> None:
    """Two specs may not ask for the same ``=FD``."""
    seen: dict[int, PortSpec] = {}
    for spec in ports:
        if spec.fd is None:
            continue
        if spec.fd in seen:
            raise SpecError(
                f"fd {spec.fd} is asked for by both {seen[spec.fd].key!r} and {spec.key!r}"
            )
        seen[spec.fd] = spec


# A unix socket address holds 108 bytes of path, its terminating NUL included.
MAX_SUN_PATH = 107


def parse_path(raw: str) -> PathSpec:
    """A ``--path`` value: it must fit a socket address and ``SERVER_STARTER_PORT``."""
    if not raw:
        raise SpecError("empty path")
    bad = sorted({c for c in raw if c in ";=\0"})
    if bad:
        # PATH=FD pairs joined by ";": either character would change what the children read.
        chars = " and ".join(map(repr, bad))
        raise SpecError(f"{chars} in a path would corrupt SERVER_STARTER_PORT")
    try:
        size = len(os.fsencode(raw))
    except UnicodeError:
        raise SpecError(f"not a file name: {raw!r}") from None
    if size > MAX_SUN_PATH:
        raise SpecError(
            f"{size} bytes long; a unix socket path holds at most {MAX_SUN_PATH} "
            "(use a shorter path, e.g. a relative one with --dir)"
        )
    return PathSpec(raw)


def _address(spec: PortSpec) -> tuple[bool, bool, str, int]:
    """What a spec binds, as far as it can be told without resolving: (udp, ipv6, host, port)."""
    host = spec.bind_host
    if spec.ipv6:
        host = socket.inet_pton(socket.AF_INET6, host).hex()
    else:
        with contextlib.suppress(OSError):
            host = socket.inet_aton(host).hex() if host.count(".") == 3 else host.lower()
    return spec.udp, spec.ipv6, host, spec.port


def check_duplicates(ports: list[PortSpec], paths: list[PathSpec]) -> None:
    """Refuse a socket asked for twice, or a path whose key is also a port's.

    Two UDP sockets may share an address (SO_REUSEADDR), and two keys in
    ``SERVER_STARTER_PORT`` are one to the children: both are mistakes. TCP and
    UDP on the same port are not (the original allows them).
    """
    seen: dict[object, str] = {}
    for spec in ports:
        what = _address(spec)
        if what in seen:
            raise SpecError(f"the same socket as --port={seen[what]}")
        seen[what] = spec.raw or spec.key
    keys = {spec.key: spec.raw or spec.key for spec in ports}
    for pspec in paths:
        where = os.path.abspath(pspec.path)
        if where in seen:
            raise SpecError(f"the same socket as --path={seen[where]}")
        if pspec.key in keys:
            raise SpecError(f"the same key in SERVER_STARTER_PORT as --port={keys[pspec.key]}")
        seen[where] = pspec.path


def port_env(items: list[tuple[str, int]]) -> str:
    """The ``SERVER_STARTER_PORT`` value: ``KEY=FD`` joined by ``;`` in order."""
    return ";".join(f"{key}={fd}" for key, fd in items)


_SIGNAL_NAMES = {
    s.name: s for s in signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_")
}


def parse_signal(raw: str) -> signal.Signals:
    """``TERM``, ``SIGTERM``, ``term``, ``sigterm`` or ``15`` -> ``Signals.SIGTERM``."""
    text = raw.strip()
    if text.isascii() and text.isdigit():
        try:
            return signal.Signals(int(text))
        except ValueError:
            raise SpecError(f"unknown signal number {text}") from None
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return _SIGNAL_NAMES[name]
    except KeyError:
        raise SpecError(f"unknown signal name {raw!r}") from None


def signal_name(sig: int) -> str:
    """``15`` -> ``"TERM"``, the spelling the original's log lines use."""
    try:
        return signal.Signals(sig).name[3:]
    except ValueError:
        return str(sig)


def parse_count(raw: Union[str, int], *, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    """A whole number from ``minimum`` to ``maximum`` (see ``values.parse_whole``)."""
    return parse_whole(raw, minimum=minimum, maximum=maximum)


def parse_fraction(raw: Union[str, float]) -> float:
    """A fraction ``0 < F <= 1`` (``0.8``)."""
    if isinstance(raw, bool):
        raise SpecError(f"not a fraction: {raw!r}")
    text = str(raw)
    if not is_decimal(text):
        raise SpecError(f"not a fraction: {raw!r} (expected a number such as 0.8)")
    value = float(text)
    if not 0 < value <= 1:  # also false for nan
        raise SpecError(f"must be > 0 and <= 1, got {raw!r}")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$", re.ASCII)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MAX_SIZE = 1024**5  # one PiB: far above any memory, far below what overflows


def parse_size(raw: Union[str, int]) -> int:
    """``400M``, ``1.5G``, ``1048576`` -> bytes (binary units), at most ``MAX_SIZE``."""
    m = _SIZE.match(str(raw)) if not isinstance(raw, bool) else None
    if not m:
        raise SpecError(f"not a size: {raw!r} (expected bytes, or a number with K, M, G or T)")
    number = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if number > MAX_SIZE:
        raise SpecError(f"size must be <= 1P, got {raw!r}")
    value = int(number)
    if value <= 0:
        raise SpecError(f"size must be > 0, got {raw!r}")
    return value
