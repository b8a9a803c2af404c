"""Binding the listening sockets once, for the starter's whole life.

TCP/UDP on IPv4 and IPv6, unix stream sockets, ``=FD`` placement. A unix
socket path is never stolen from a live server (a connect probe decides), a
stale one is replaced, the new one honours the umask, and only our own file
(same inode) is unlinked at exit. Sockets systemd passed (``LISTEN_FDS``) are
adopted instead of bound (``adopt_systemd``); their files are systemd's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import os
import resource
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from .spec import PathSpec, PortSpec, port_env
from .values import SpecError, parse_whole

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    # A socket systemd passed: the socket, its address as a spec, its name (LISTEN_FDNAMES).
    Passed = tuple[socket.socket, Union[PortSpec, PathSpec], Optional[str]]


class BindError(Exception):
    """A socket could not be set up; the message names the option and value."""


@dataclass
class Bound:
    spec: Union[PortSpec, PathSpec]
    sock: socket.socket
    ident: Optional[tuple[int, int]] = None  # (dev, ino) of a unix socket file we made
    name: Optional[str] = None  # its name in systemd's LISTEN_FDNAMES, when it has one
    adopted: bool = False  # passed by systemd (LISTEN_FDS), not bound by us

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    def chosen_address(self) -> Optional[str]:
        """Where a port 0 spec is bound (the kernel chose the port); None for any
        other spec. ``SERVER_STARTER_PORT`` keeps the spec, as the original does."""
        if not isinstance(self.spec, PortSpec) or self.spec.port != 0:
            return None
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _option(spec: Union[PortSpec, PathSpec]) -> str:
    if isinstance(spec, PortSpec):
        return f"--port={spec.raw or spec.key}"
    return f"--path={spec.path}"


def _resolve(spec: PortSpec) -> str:
    """The address to bind: IPv4 only for host names, as the original (gethostbyname)."""
    if spec.ipv6:
        return spec.bind_host
    with contextlib.suppress(ValueError):
        # An address needs no lookup (and a str lookup loads the IDNA codec).
        return str(ipaddress.IPv4Address(spec.bind_host))
    try:
        return socket.gethostbyname(spec.bind_host)
    except OSError as exc:
        raise BindError(f"{_option(spec)}: cannot resolve host {spec.host!r}: {exc}") from None
    except (UnicodeError, ValueError):  # a label the IDNA codec refuses: too long, empty
        why = "not a host name"
        raise BindError(f"{_option(spec)}: cannot resolve host {spec.host!r}: {why}") from None


def bind_port(spec: PortSpec, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if spec.ipv6 else socket.AF_INET
    kind = socket.SOCK_DGRAM if spec.udp else socket.SOCK_STREAM
    host = _resolve(spec)
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if spec.ipv6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, spec.port))
        if not spec.udp:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{spec.port}" if spec.ipv6 else f"{host}:{spec.port}"
        raise BindError(f"{_option(spec)}: cannot bind {where}: {exc.strerror}") from None
    return sock


def _probe_live(path: str) -> bool:
    """True if something accepts connections on the unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as exc:
        # A full backlog (EAGAIN) or a timeout still means somebody listens.
        return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or isinstance(exc, TimeoutError)
    finally:
        probe.close()
    return True


def bind_path(spec: PathSpec, backlog: int) -> Bound:
    path = spec.path
    opt = _option(spec)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BindError(f"{opt}: directory {parent} does not exist")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise BindError(f"{opt}: {path} exists and is not a socket; refusing to replace it")
        if _probe_live(path):
            raise BindError(f"{opt}: a live server is listening on {path}; refusing to take it")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: nobody listens
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)  # the mode comes from the umask, as for any file we create
        sock.listen(backlog)
        st = os.stat(path)
    except OSError as exc:
        sock.close()
        raise BindError(f"{opt}: cannot listen on {path}: {exc.strerror or exc}") from None
    return Bound(spec, sock, (st.st_dev, st.st_ino))


def _place(bound: list[Bound]) -> None:
    """Move each ``=FD`` socket to exactly its fd; first move ours out of the way."""
    targets = {b.spec.fd for b in bound if isinstance(b.spec, PortSpec) and b.spec.fd is not None}
    if not targets:
        return
    floor = max(targets) + 1
    for b in bound:
        want = b.spec.fd if isinstance(b.spec, PortSpec) else None
        if b.fd in targets and b.fd != want:
            new_fd = _fd_call(b.spec, max(targets), fcntl.fcntl, b.fd, fcntl.F_DUPFD_CLOEXEC, floor)
            old = b.sock
            b.sock = socket.socket(fileno=new_fd)
            old.close()
    for b in bound:
        want = b.spec.fd if isinstance(b.spec, PortSpec) else None
        if want is None or b.fd == want:
            continue
        _fd_call(b.spec, want, os.dup2, b.fd, want, inheritable=False)
        old = b.sock
        b.sock = socket.socket(fileno=want)
        old.close()


def _fd_call(spec: Union[PortSpec, PathSpec], fd: int, call: Any, *args: Any, **kw: Any) -> int:
    """``call(*args)``; its failure (an fd at or above the open-files limit) as one line."""
    try:
        return int(call(*args, **kw))
    except OSError as exc:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        raise BindError(
            f"{_option(spec)}: cannot place the socket on fd {fd}: "
            f"{exc.strerror or exc} (the open-files limit is {soft})"
        ) from None


def bind_all(ports: list[PortSpec], paths: list[PathSpec], backlog: int) -> list[Bound]:
    """Bind everything or nothing: on any failure, what was made is undone."""
    bound: list[Bound] = []
    try:
        for spec in ports:
            bound.append(Bound(spec, bind_port(spec, backlog)))
        for pspec in paths:
            bound.append(bind_path(pspec, backlog))
        _place(bound)
    except BaseException:
        close_all(bound)
        raise
    return bound


# ---- systemd socket activation (sd_listen_fds(3)) ---------------------------

SD_LISTEN_FDS_START = 3
LISTEN_VARS = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def foreign_listen_fds(environ: Mapping[str, str]) -> Optional[str]:
    """Why ``LISTEN_FDS`` in ``environ`` is not ours, or None (absent, or ours).

    A wrapper that forks instead of exec'ing (``sh -c`` without ``exec``)
    leaves systemd's sockets to a pid that is not us: worth one log line,
    since binding the same address next will fail.
    """
    fds, pid = environ.get("LISTEN_FDS"), environ.get("LISTEN_PID")
    if not fds or pid is None or pid.strip() == str(os.getpid()):
        return None
    return (
        f"ignoring LISTEN_FDS={fds}: LISTEN_PID={pid} is not our pid {os.getpid()} "
        "(started through a wrapper that did not exec?); binding the sockets ourselves"
    )


def _wrap(fd: int) -> socket.socket:
    """A socket object owning passed ``fd``: a listening stream or a datagram socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"LISTEN_FDS: fd {fd} is not a usable socket: {exc.strerror}") from None
    try:
        sock.set_inheritable(False)  # a generation inherits it only through spawn
        if sock.type == socket.SOCK_STREAM and not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            raise BindError(
                f"LISTEN_FDS: fd {fd} is a connection, not a listening socket "
                "(Accept=yes in the socket unit?)"
            )
    except BaseException:
        sock.close()
        raise
    return sock


def _describe(sock: socket.socket) -> Union[PortSpec, PathSpec]:
    """A spec for a passed socket, so that its key is what ``--port``/``--path`` would say.

    ``HOST:PORT``, ``[V6]:PORT`` (UDP keys drop the ``u``, as ours do), or the
    unix path (``@name`` for an abstract one).
    """
    fd = sock.fileno()
    if sock.family == socket.AF_UNIX:
        if sock.type != socket.SOCK_STREAM:
            raise BindError(f"LISTEN_FDS: fd {fd} is a unix socket but not a stream socket")
        name = sock.getsockname()
        if isinstance(name, bytes):  # abstract namespace
            name = "@" + name.lstrip(b"\0").decode(errors="replace")
        if not name:
            raise BindError(f"LISTEN_FDS: fd {fd} is an unnamed unix socket")
        return PathSpec(str(name))
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise BindError(
            f"LISTEN_FDS: fd {fd} is a {sock.family.name} socket "
            "(only AF_INET, AF_INET6 and AF_UNIX can be passed on)"
        )
    host, port = sock.getsockname()[:2]
    udp = sock.type == socket.SOCK_DGRAM
    ipv6 = sock.family == socket.AF_INET6
    where = f"[{host}]" if ipv6 else host
    return PortSpec(
        port=port, host=host, udp=udp, ipv6=ipv6, raw=f"{where}:{'u' if udp else ''}{port}"
    )


def _suggest(seen: Union[PortSpec, PathSpec]) -> str:
    """The option that would match a passed socket: ``--port=PORT`` for a wildcard."""
    if isinstance(seen, PortSpec) and seen.host is not None and _unspecified(seen.host):
        return f"--port={'u' if seen.udp else ''}{seen.port}"
    return _option(seen)


def _show(seen: Union[PortSpec, PathSpec]) -> str:
    """A passed socket as a ``--port``/``--path`` value would say it (``u`` for UDP)."""
    return seen.raw if isinstance(seen, PortSpec) else seen.path


def _unspecified(host: str) -> bool:
    return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified


def _same_path(a: str, b: str) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _matches(spec: Union[PortSpec, PathSpec], seen: Union[PortSpec, PathSpec]) -> bool:
    """Does the passed socket described as ``seen`` serve ``spec``?"""
    if isinstance(spec, PathSpec):
        return isinstance(seen, PathSpec) and _same_path(seen.path, spec.path)
    if not isinstance(seen, PortSpec) or seen.port != spec.port or seen.udp != spec.udp:
        return False
    assert seen.host is not None
    if spec.host is None:
        # PORT: the wildcard, IPv4 (what we bind) or IPv6 (systemd's
        # ListenStream=PORT is a dual-stack [::]:PORT).
        return _unspecified(seen.host)
    address = ipaddress.ip_address(seen.host.split("%", 1)[0])
    if spec.ipv6:
        return seen.ipv6 and address == ipaddress.ip_address(spec.host)
    return not seen.ipv6 and str(address) == _resolve(spec)


def _listen_count(environ: Mapping[str, str]) -> int:
    """How many sockets systemd passed to this very process (0: none, or not to us)."""
    pid_text, count_text = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    if not count_text or pid_text.strip() != str(os.getpid()):
        return 0
    try:
        return parse_whole(count_text, maximum=65536)
    except SpecError as exc:
        why = "" if "not a whole number" in str(exc) else f" ({exc})"
        raise BindError(f"LISTEN_FDS={count_text}: not a number of file descriptors{why}") from None


def adopt_systemd(
    ports: list[PortSpec], paths: list[PathSpec], environ: Mapping[str, str]
) -> Optional[list[Bound]]:
    """The sockets systemd passed us (``LISTEN_FDS``), or None when it passed none.

    They are ours when ``LISTEN_PID`` is our pid; they sit at fds 3, 4, ...
    and ``LISTEN_FDNAMES`` (optional, ``:``-separated) names them. Each is
    matched by its address (getsockname) to the ``--port``/``--path`` specs;
    a ``PORT`` spec matches the wildcard address on that port, IPv4 or IPv6.
    The configuration and the socket unit must agree: a spec no passed
    socket matches is an error naming the spec (binding it ourselves would
    give one port a lifetime different from the others, or fail with
    "address in use" against systemd's own socket), and so is a passed socket
    no spec matches (its clients would wait forever). Without any spec every
    passed socket is adopted, keyed by its address (``HOST:PORT``,
    ``[V6]:PORT`` or the unix path). ``=FD`` placement applies as for bound
    sockets. The sockets are never bound, listened on again or unlinked: the
    files of unix sockets belong to systemd.
    """
    count = _listen_count(environ)
    if count == 0:
        return None
    names = _fd_names(environ, count)
    socks: list[socket.socket] = []
    adopted: list[Bound] = []
    try:
        for i in range(count):
            socks.append(_wrap(SD_LISTEN_FDS_START + i))
        passed = [(sock, _describe(sock), name) for sock, name in zip(socks, names)]
        specs: list[Union[PortSpec, PathSpec]] = [*ports, *paths]
        if not specs:
            adopted = [Bound(seen, sock, None, name, True) for sock, seen, name in passed]
        else:
            adopted = _match_specs(specs, passed)
        adopted = ordered(adopted)
        _place(adopted)
    except BaseException:
        for sock in [*socks, *(b.sock for b in adopted)]:
            sock.close()
        raise
    return adopted


def _fd_names(environ: Mapping[str, str], count: int) -> list[Optional[str]]:
    """The name of each passed fd (``LISTEN_FDNAMES``, optional), None where unnamed."""
    names_text = environ.get("LISTEN_FDNAMES")
    if names_text is None:
        return [None] * count
    split = names_text.split(":")
    if len(split) != count:
        raise BindError(
            f"LISTEN_FDNAMES={names_text}: {len(split)} names for LISTEN_FDS={count}"
        )
    return [n or None for n in split]


def _match_specs(
    specs: list[Union[PortSpec, PathSpec]], passed: list[Passed]
) -> list[Bound]:
    """Each spec with the passed socket at its address; a spec without one, or
    a socket left over, is an error (the closing is the caller's)."""
    adopted: list[Bound] = []
    left = list(passed)
    for spec in specs:
        hit = next((p for p in left if _matches(spec, p[1])), None)
        if hit is None:
            listing = ", ".join(f"{_show(seen)} (fd {s.fileno()})" for s, seen, _ in passed)
            raise BindError(
                f"{_option(spec)}: not among the sockets systemd passed "
                f"(LISTEN_FDS: {listing}); make the socket unit and the options agree"
            )
        left.remove(hit)
        adopted.append(Bound(spec, hit[0], None, hit[2], True))
    if left:
        sock, seen, _ = left[0]
        raise BindError(
            f"LISTEN_FDS: fd {sock.fileno()} ({_show(seen)}) matches no --port or --path "
            f"(add {_suggest(seen)}, or remove it from the socket unit)"
        )
    return adopted


def ordered(bound: list[Bound]) -> list[Bound]:
    """``SERVER_STARTER_PORT`` order: ports first, then paths, each in their own order."""
    return [b for b in bound if isinstance(b.spec, PortSpec)] + [
        b for b in bound if isinstance(b.spec, PathSpec)
    ]


def fd_name(b: Bound) -> str:
    """The socket's name for ``LISTEN_FDNAMES``: systemd's, else its key.

    Names may not hold ``:`` (the separator), so a key's colons become ``_``
    (``127.0.0.1:8080`` -> ``127.0.0.1_8080``).
    """
    return b.name if b.name else b.key.replace(":", "_")


def listen_env(bound: list[Bound]) -> dict[str, str]:
    """What a generation sees with ``--listen-fds``: the sockets at fds 3, 4, ...

    ``SERVER_STARTER_PORT`` names the same fds, in the same order, so an app
    may read either protocol. ``LISTEN_PID`` is set by the child itself.
    """
    layout = ordered(bound)
    return {
        "SERVER_STARTER_PORT": port_env(
            [(b.key, SD_LISTEN_FDS_START + i) for i, b in enumerate(layout)]
        ),
        "LISTEN_FDS": str(len(layout)),
        "LISTEN_FDNAMES": ":".join(fd_name(b) for b in layout),
    }


def close_all(bound: list[Bound]) -> None:
    """Close every socket and unlink the unix socket files that are still ours."""
    for b in bound:
        if isinstance(b.spec, PathSpec) and b.ident is not None:
            with contextlib.suppress(OSError):
                st = os.lstat(b.spec.path)
                if (st.st_dev, st.st_ino) == b.ident:
                    os.unlink(b.spec.path)
        b.sock.close()


def env_value(bound: list[Bound]) -> str:
    """``SERVER_STARTER_PORT``: ports first, then paths, each in command-line order."""
    return port_env([(b.key, b.fd) for b in ordered(bound)])
