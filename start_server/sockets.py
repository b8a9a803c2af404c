"""Binding the listening sockets once, for the starter's whole life.

TCP/UDP on IPv4 and IPv6, unix stream sockets, ``=FD`` placement. A unix
socket path is never stolen from a live server (a connect probe decides), a
stale one is replaced, the new one honours the umask, and only our own file
(same inode) is unlinked at exit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from dataclasses import dataclass
from typing import Optional, Union

from .spec import PathSpec, PortSpec, port_env


class BindError(Exception):
    """A socket could not be set up; the message names the option and value."""


@dataclass
class Bound:
    spec: Union[PortSpec, PathSpec]
    sock: socket.socket
    ident: Optional[tuple[int, int]] = None  # (dev, ino) of a unix socket file we made

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def fd(self) -> int:
        return self.sock.fileno()


def _option(spec: Union[PortSpec, PathSpec]) -> str:
    if isinstance(spec, PortSpec):
        return f"--port={spec.raw or spec.key}"
    return f"--path={spec.path}"


def bind_port(spec: PortSpec, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if spec.ipv6 else socket.AF_INET
    kind = socket.SOCK_DGRAM if spec.udp else socket.SOCK_STREAM
    host = spec.bind_host
    if not spec.ipv6:
        try:
            # IPv4 only, as the original (gethostbyname) does.
            host = socket.gethostbyname(host)
        except OSError as exc:
            raise BindError(f"{_option(spec)}: cannot resolve host {spec.host!r}: {exc}") from None
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
        raise BindError(f"{opt}: cannot listen on {path}: {exc.strerror}") from None
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
            new_fd = fcntl.fcntl(b.fd, fcntl.F_DUPFD_CLOEXEC, floor)
            old = b.sock
            b.sock = socket.socket(fileno=new_fd)
            old.close()
    for b in bound:
        want = b.spec.fd if isinstance(b.spec, PortSpec) else None
        if want is None or b.fd == want:
            continue
        os.dup2(b.fd, want, inheritable=False)
        old = b.sock
        b.sock = socket.socket(fileno=want)
        old.close()


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
    ports = [(b.key, b.fd) for b in bound if isinstance(b.spec, PortSpec)]
    paths = [(b.key, b.fd) for b in bound if isinstance(b.spec, PathSpec)]
    return port_env(ports + paths)
