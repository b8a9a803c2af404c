"""The app side (start_server.listener): the env string, real inherited sockets, sd_notify.

Every socket made here is closed by the test (pytest turns a ResourceWarning into a
failure). A socket handed to ``listen_from_env`` is detached first, so exactly one
object owns each fd.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import pytest
from support import has_ipv6_loopback

import start_server
from start_server.listener import (
    ENV_GENERATION,
    ENV_PORT,
    ServerStarterError,
    listen_from_env,
    notify,
    notify_ready,
    parse_port_env,
    server_ports,
)

# ---- helpers ---------------------------------------------------------------------------


class Fds:
    """Raw fds of sockets made for a test; whatever a test did not hand over is closed."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def add(
        self, family: int, kind: int, address: Union[tuple[str, int], str], listen: bool = False
    ) -> int:
        sock = socket.socket(family, kind)
        try:
            sock.bind(address)
            if listen:
                sock.listen()
        except BaseException:
            sock.close()
            raise
        fd = sock.detach()
        self.fds.append(fd)
        return fd

    def tcp(self) -> int:
        return self.add(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 0), listen=True)

    def udp(self) -> int:
        return self.add(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 0))

    def tcp6(self) -> int:
        return self.add(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0), listen=True)

    def unix(self, path: Path) -> int:
        return self.add(socket.AF_UNIX, socket.SOCK_STREAM, str(path), listen=True)

    def owned_by(self, socks: list[socket.socket]) -> None:
        """These sockets own their fds now: do not close them twice."""
        for s in socks:
            self.fds.remove(s.fileno())

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):  # a test may have closed it already
                os.close(fd)
        self.fds.clear()


@pytest.fixture
def fds() -> Iterator[Fds]:
    made = Fds()
    yield made
    made.close()


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def env(value: str) -> dict[str, str]:
    return {ENV_PORT: value}


# ---- parse_port_env and server_ports ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", {}),
        ("  ", {}),
        ("8080=3", {"8080": 3}),
        (
            "8080=3;127.0.0.1:8081=4;/run/app.sock=5",
            {"8080": 3, "127.0.0.1:8081": 4, "/run/app.sock": 5},
        ),
        ("[::1]:8080=5", {"[::1]:8080": 5}),
        ("80=0", {"80": 0}),
        ("/tmp/a=b.sock=7", {"/tmp/a=b.sock": 7}),  # the last '=' separates the fd
    ],
)
def test_parse_port_env(value: str, expected: dict[str, int]) -> None:
    got = parse_port_env(value)
    assert got == expected
    assert list(got) == list(expected)  # command-line order is kept


@pytest.mark.parametrize(
    "value", ["8080", "=3", "8080=", "8080=x", "8080=3;", ";8080=3", "8080=3;;8081=4", "80=-1"]
)
def test_parse_port_env_malformed(value: str) -> None:
    with pytest.raises(ServerStarterError, match=f"{ENV_PORT}=.*malformed item"):
        parse_port_env(value)


def test_server_ports_reads_the_given_environ() -> None:
    assert server_ports(env("8080=3;/s=4")) == {"8080": 3, "/s": 4}
    assert server_ports(env("")) == {}


def test_server_ports_without_the_variable_is_a_clear_error() -> None:
    with pytest.raises(ServerStarterError) as info:
        server_ports({})
    assert ENV_PORT in str(info.value)
    assert "start_server" in str(info.value)


def test_server_ports_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PORT, "9000=6")
    assert server_ports() == {"9000": 6}
    monkeypatch.delenv(ENV_PORT)
    with pytest.raises(ServerStarterError):
        server_ports()


def test_public_api_is_exported() -> None:
    assert start_server.listen_from_env is listen_from_env
    assert start_server.server_ports is server_ports
    assert start_server.notify_ready is notify_ready
    assert start_server.ServerStarterError is ServerStarterError
    assert ENV_GENERATION == "SERVER_STARTER_GENERATION"


# ---- listen_from_env with real sockets -------------------------------------------------------


def test_listen_from_env_wraps_every_fd_in_order(fds: Fds, tmp_path: Path) -> None:
    tcp, udp, unix = fds.tcp(), fds.udp(), fds.unix(tmp_path / "s.sock")
    value = f"8080={tcp};u53={udp};{tmp_path / 's.sock'}={unix}"
    socks = listen_from_env(environ=env(value))
    fds.owned_by(socks)
    try:
        assert [s.fileno() for s in socks] == [tcp, udp, unix]
        assert [(s.family, s.type) for s in socks] == [
            (socket.AF_INET, socket.SOCK_STREAM),
            (socket.AF_INET, socket.SOCK_DGRAM),
            (socket.AF_UNIX, socket.SOCK_STREAM),
        ]
        # The wrapped TCP socket really is the listening one.
        host, port = socks[0].getsockname()
        with socket.create_connection((host, port), timeout=5) as client:
            conn, _ = socks[0].accept()
            conn.close()
            assert client.getpeername() == (host, port)
    finally:
        for s in socks:
            s.close()
    assert not any(is_open(fd) for fd in (tcp, udp, unix))  # closing a socket closes its fd


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_listen_from_env_ipv6(fds: Fds) -> None:
    fd = fds.tcp6()
    socks = listen_from_env(environ=env(f"[::1]:8080={fd}"))
    fds.owned_by(socks)
    try:
        assert (socks[0].family, socks[0].type) == (socket.AF_INET6, socket.SOCK_STREAM)
    finally:
        socks[0].close()


def test_listen_from_env_selects_one_key(fds: Fds) -> None:
    a, b = fds.tcp(), fds.udp()
    socks = listen_from_env("127.0.0.1:9001", environ=env(f"9000={a};127.0.0.1:9001={b}"))
    fds.owned_by(socks)
    try:
        assert len(socks) == 1
        assert socks[0].fileno() == b
        assert socks[0].type == socket.SOCK_DGRAM
    finally:
        socks[0].close()
    assert is_open(a)  # the other one was not touched


def test_listen_from_env_unknown_key(fds: Fds) -> None:
    a = fds.tcp()
    with pytest.raises(ServerStarterError, match=r"no socket for '8081' \(it has: 8080\)"):
        listen_from_env("8081", environ=env(f"8080={a}"))
    with pytest.raises(ServerStarterError, match=r"it has: none"):
        listen_from_env("8081", environ=env(""))
    assert is_open(a)


def test_listen_from_env_empty_and_missing() -> None:
    assert listen_from_env(environ=env("")) == []
    with pytest.raises(ServerStarterError, match=ENV_PORT):
        listen_from_env(environ={})


def _no_resource_warning_while(func: object) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert callable(func)
        func()
        gc.collect()
    return [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_bad_fd_releases_the_sockets_already_made(fds: Fds, tmp_path: Path) -> None:
    a, b = fds.tcp(), fds.udp()
    not_a_socket = os.open(tmp_path / "plain", os.O_RDWR | os.O_CREAT)
    fds.fds.append(not_a_socket)
    value = f"8080={a};u53={b};bad={not_a_socket}"

    def attempt() -> None:
        with pytest.raises(ServerStarterError, match=rf"bad={not_a_socket} is not a usable socket"):
            listen_from_env(environ=env(value))

    assert _no_resource_warning_while(attempt) == []
    # Detached, not closed: the inherited fds are as they were, still usable.
    assert is_open(a)
    assert is_open(b)
    assert is_open(not_a_socket)
    socks = listen_from_env(environ=env(f"8080={a}"))
    fds.owned_by(socks)
    socks[0].close()


def test_closed_fd_is_an_error(fds: Fds) -> None:
    a = fds.tcp()
    closed = fds.tcp()
    os.close(closed)
    fds.fds.remove(closed)
    with pytest.raises(ServerStarterError, match=rf"8081={closed} is not a usable socket"):
        listen_from_env(environ=env(f"8080={a};8081={closed}"))
    assert is_open(a)


# ---- sd_notify ----------------------------------------------------------------------------------


@pytest.fixture
def notify_sock(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "n.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path
    finally:
        sock.close()


def test_notify_sends_one_datagram(notify_sock: tuple[socket.socket, str]) -> None:
    sock, path = notify_sock
    assert notify("STATUS=warming up", environ={"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"STATUS=warming up"


def test_notify_abstract_namespace() -> None:
    name = f"start_server-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"READY=1"


def test_notify_without_socket_is_a_no_op() -> None:
    assert notify("READY=1", environ={}) is False
    assert notify("READY=1", environ={"NOTIFY_SOCKET": ""}) is False


def test_notify_ready_uses_the_process_environment(
    notify_sock: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_sock
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify_ready() is True
    assert sock.recv(4096) == b"READY=1"
    assert notify_ready("listening on 8080") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening on 8080"


def test_notify_ready_without_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify_ready() is False
    assert notify_ready("x") is False
