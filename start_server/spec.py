"""Pure parsing: the ``--port`` grammar, signal names, counts, sizes; the env string.

Nothing here touches the OS (host names are resolved when binding), so every
rule is a fast unit test.
"""

from __future__ import annotations

import ipaddress
import re
import signal
from dataclasses import dataclass, field

from .values import SpecError

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional, Union

# The original's two regexes, kept as loose on white space as it is.
_PLAIN = re.compile(r"^\s*(u?)(\d+)(?:\s*=\s*(\d+))?\s*$")
_HOSTED = re.compile(r"^\s*(?:\[\s*|)([^\]]*?)\s*(?:\]\s*|):\s*(u?)(\d+)(?:\s*=\s*(\d+))?\s*$")


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
    port = int(text)
    if port > 65535:
        raise SpecError(f"port {port} out of range 0-65535 in {raw!r}")
    return port


def parse_port(raw: str) -> PortSpec:
    """Parse ``PORT``, ``HOST:PORT``, ``[V6]:PORT``, each with ``u`` and ``=FD``."""
    m = _PLAIN.match(raw)
    if m:
        udp, port, fd = m.groups()
        return PortSpec(
            port=_port_number(port, raw),
            udp=bool(udp),
            fd=None if fd is None else int(fd),
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
    if ipv6:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SpecError(f"invalid IPv6 address {host!r} in {raw!r}") from None
    elif raw.lstrip().startswith("["):
        raise SpecError(f"invalid port spec {raw!r}: brackets are for IPv6 addresses")
    elif re.search(r"\s", host):
        raise SpecError(f"invalid host {host!r} in {raw!r}")
    return PortSpec(
        port=_port_number(port, raw),
        host=host,
        udp=bool(udp),
        fd=None if fd is None else int(fd),
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


def port_env(items: list[tuple[str, int]]) -> str:
    """The ``SERVER_STARTER_PORT`` value: ``KEY=FD`` joined by ``;`` in order."""
    return ";".join(f"{key}={fd}" for key, fd in items)


_SIGNAL_NAMES = {
    s.name: s for s in signal.Signals if s.name.startswith("SIG") and not s.name.startswith("SIG_")
}


def parse_signal(raw: str) -> signal.Signals:
    """``TERM``, ``SIGTERM``, ``term``, ``sigterm`` or ``15`` -> ``Signals.SIGTERM``."""
    text = raw.strip()
    if text.isdigit():
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


def parse_count(raw: Union[str, int], *, minimum: int = 0) -> int:
    """A whole number >= ``minimum``."""
    if isinstance(raw, bool):
        raise SpecError(f"not a whole number: {raw!r}")
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SpecError(f"not a whole number: {raw!r}") from None
    if value < minimum:
        raise SpecError(f"must be >= {minimum}, got {raw!r}")
    return value


def parse_fraction(raw: Union[str, float]) -> float:
    """A fraction ``0 < F <= 1`` (``0.8``)."""
    if isinstance(raw, bool):
        raise SpecError(f"not a fraction: {raw!r}")
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise SpecError(f"not a fraction: {raw!r} (expected a number such as 0.8)") from None
    if not 0 < value <= 1:  # also false for nan
        raise SpecError(f"must be > 0 and <= 1, got {raw!r}")
    return value


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(raw: Union[str, int]) -> int:
    """``400M``, ``1.5G``, ``1048576`` -> bytes (binary units)."""
    m = _SIZE.match(str(raw))
    if not m:
        raise SpecError(f"not a size: {raw!r} (expected bytes, or a number with K, M, G or T)")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise SpecError(f"size must be > 0, got {raw!r}")
    return value
