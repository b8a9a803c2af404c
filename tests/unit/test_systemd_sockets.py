"""systemd socket activation, the parts that need no starter: describing a
passed socket, matching it to a spec, reading LISTEN_*, the names and the fd
layout handed to children. Real loopback sockets, no mocks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from start_server.config import build
from start_server.sockets import (
    BindError,
    Bound,
    _describe,
    _listen_count,
    _matches,
    _wrap,
    adopt_systemd,
    fd_name,
    foreign_listen_fds,
    listen_env,
)
from start_server.spec import PathSpec, PortSpec, parse_port
from start_server.values import ConfigError

OURS = str(os.getpid())


@pytest.fixture
def socks() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for s in made:
        s.close()


def listening(
    made: list[socket.socket], host: str, kind: int = socket.SOCK_STREAM, port: int = 0
) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, kind)
    made.append(s)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, port))
    if kind == socket.SOCK_STREAM:
        s.listen()
    return s


def test_describe_gives_the_keys_a_port_option_would(
    socks: list[socket.socket], tmp_path: Path
) -> None:
    v4 = listening(socks, "127.0.0.1")
    p4 = v4.getsockname()[1]
    seen = _describe(v4)
    assert isinstance(seen, PortSpec)
    assert (seen.key, seen.raw, seen.udp) == (f"127.0.0.1:{p4}", f"127.0.0.1:{p4}", False)
    wild6 = listening(socks, "::")
    seen6 = _describe(wild6)
    assert isinstance(seen6, PortSpec)
    assert seen6.key == f"[::]:{wild6.getsockname()[1]}" and seen6.ipv6
    udp = listening(socks, "127.0.0.1", socket.SOCK_DGRAM)
    seen_udp = _describe(udp)
    assert isinstance(seen_udp, PortSpec)
    pu = udp.getsockname()[1]
    assert (seen_udp.key, seen_udp.raw, seen_udp.udp) == (
        f"127.0.0.1:{pu}", f"127.0.0.1:u{pu}", True
    )
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    socks.append(unix)
    unix.bind(str(tmp_path / "s.sock"))
    assert _describe(unix) == PathSpec(str(tmp_path / "s.sock"))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    socks.append(abstract)
    abstract.bind(f"\0start_server-test-{os.getpid()}")
    assert _describe(abstract) == PathSpec(f"@start_server-test-{os.getpid()}")


def test_describe_refuses_what_cannot_be_passed_on(socks: list[socket.socket]) -> None:
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    socks.append(dgram)
    with pytest.raises(BindError, match=r"^LISTEN_FDS: fd \d+ is a unix socket but not a stream"):
        _describe(dgram)
    unnamed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    socks.append(unnamed)
    with pytest.raises(BindError, match=r"^LISTEN_FDS: fd \d+ is an unnamed unix socket$"):
        _describe(unnamed)


def test_wrap_refuses_non_sockets_and_connections(socks: list[socket.socket]) -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(BindError, match=rf"^LISTEN_FDS: fd {read_end} is not a usable socket"):
            _wrap(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    server = listening(socks, "127.0.0.1")
    client = socket.create_connection(server.getsockname())
    socks.append(client)
    fd = os.dup(client.fileno())
    # _wrap owns (and on refusal closes) the fd it is given.
    with pytest.raises(BindError, match=rf"^LISTEN_FDS: fd {fd} is a connection, not a listening"):
        _wrap(fd)
    with pytest.raises(OSError):
        os.fstat(fd)
    ok = _wrap(os.dup(server.fileno()))
    socks.append(ok)
    assert not ok.get_inheritable()


def test_a_plain_port_matches_the_wildcard_only(socks: list[socket.socket]) -> None:
    port = listening(socks, "0.0.0.0").getsockname()[1]
    wild4 = _describe(socks[-1])
    wild6 = _describe(listening(socks, "::", port=0))
    loop4 = _describe(listening(socks, "127.0.0.1"))
    assert _matches(parse_port(str(port)), wild4)
    assert isinstance(wild6, PortSpec)
    assert _matches(parse_port(str(wild6.port)), wild6)
    assert isinstance(loop4, PortSpec)
    assert not _matches(parse_port(str(loop4.port)), loop4)
    assert not _matches(parse_port(str(port + 1 if port < 65535 else port - 1)), wild4)
    assert not _matches(parse_port(f"u{port}"), wild4)


def test_host_specs_match_their_address(socks: list[socket.socket]) -> None:
    loop4 = _describe(listening(socks, "127.0.0.1"))
    assert isinstance(loop4, PortSpec)
    assert _matches(parse_port(f"127.0.0.1:{loop4.port}"), loop4)
    assert _matches(parse_port(f"localhost:{loop4.port}"), loop4)  # resolved, as when binding
    assert not _matches(parse_port(f"127.0.0.2:{loop4.port}"), loop4)
    assert not _matches(parse_port(f"[::1]:{loop4.port}"), loop4)
    loop6 = _describe(listening(socks, "::1"))
    assert isinstance(loop6, PortSpec)
    assert _matches(parse_port(f"[::1]:{loop6.port}"), loop6)
    assert _matches(parse_port(f"[0:0::1]:{loop6.port}"), loop6)  # the same address
    assert not _matches(parse_port(f"127.0.0.1:{loop6.port}"), loop6)
    udp = _describe(listening(socks, "127.0.0.1", socket.SOCK_DGRAM))
    assert isinstance(udp, PortSpec)
    assert _matches(parse_port(f"127.0.0.1:u{udp.port}"), udp)
    assert not _matches(parse_port(f"127.0.0.1:{udp.port}"), udp)


def test_paths_match_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(real / "s.sock"))
        seen = _describe(sock)
        assert _matches(PathSpec(str(real / "s.sock")), seen)
        assert _matches(PathSpec(str(tmp_path / "link" / "s.sock")), seen)  # samefile
        monkeypatch.chdir(real)
        assert _matches(PathSpec("s.sock"), seen)
        assert not _matches(PathSpec(str(real / "t.sock")), seen)
        assert not _matches(parse_port("8080"), seen)
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("environ", "count"),
    [
        ({}, 0),
        ({"LISTEN_FDS": "2"}, 0),  # no LISTEN_PID: not for us
        ({"LISTEN_FDS": "2", "LISTEN_PID": "1"}, 0),
        ({"LISTEN_FDS": "2", "LISTEN_PID": "not-a-pid"}, 0),
        ({"LISTEN_FDS": "2", "LISTEN_PID": OURS}, 2),
        ({"LISTEN_FDS": "0", "LISTEN_PID": OURS}, 0),
        ({"LISTEN_FDS": "", "LISTEN_PID": OURS}, 0),
    ],
)
def test_listen_count(environ: dict[str, str], count: int) -> None:
    assert _listen_count(environ) == count


def test_listen_count_refuses_garbage_meant_for_us() -> None:
    with pytest.raises(BindError, match=r"^LISTEN_FDS=two: not a number of file descriptors$"):
        _listen_count({"LISTEN_FDS": "two", "LISTEN_PID": OURS})


def test_nothing_to_adopt_touches_no_fd() -> None:
    assert adopt_systemd([parse_port("8080")], [], {"LISTEN_FDS": "1", "LISTEN_PID": "1"}) is None
    assert adopt_systemd([], [], {}) is None


def test_names_must_be_as_many_as_the_sockets() -> None:
    environ = {"LISTEN_FDS": "2", "LISTEN_PID": OURS, "LISTEN_FDNAMES": "web"}
    with pytest.raises(BindError, match=r"^LISTEN_FDNAMES=web: 1 names for LISTEN_FDS=2$"):
        adopt_systemd([], [], environ)


def test_foreign_listen_fds_says_why() -> None:
    assert foreign_listen_fds({}) is None
    assert foreign_listen_fds({"LISTEN_FDS": "1", "LISTEN_PID": OURS}) is None
    text = foreign_listen_fds({"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    assert text == (
        f"ignoring LISTEN_FDS=1: LISTEN_PID=1 is not our pid {OURS} (started through a "
        "wrapper that did not exec?); binding the sockets ourselves"
    )


def test_listen_env_orders_ports_first_and_names_without_colons(
    socks: list[socket.socket], tmp_path: Path
) -> None:
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    socks.append(unix)
    tcp = listening(socks, "127.0.0.1")
    v6 = listening(socks, "::1")
    bound = [
        Bound(PathSpec(str(tmp_path / "a.sock")), unix, None, "local", True),
        Bound(parse_port(f"127.0.0.1:{tcp.getsockname()[1]}"), tcp),
        Bound(parse_port(f"[::1]:{v6.getsockname()[1]}"), v6),
    ]
    p4, p6 = tcp.getsockname()[1], v6.getsockname()[1]
    assert [fd_name(b) for b in bound] == ["local", f"127.0.0.1_{p4}", f"[__1]_{p6}"]
    assert listen_env(bound) == {
        "SERVER_STARTER_PORT": f"127.0.0.1:{p4}=3;[::1]:{p6}=4;{tmp_path / 'a.sock'}=5",
        "LISTEN_FDS": "3",
        "LISTEN_FDNAMES": f"127.0.0.1_{p4}:[__1]_{p6}:local",
    }


def test_config_listen_fds_flag_and_its_conflict_with_fd_placement() -> None:
    base = {"command": (sys.executable,), "port": ("8080",)}
    assert build(base, {}).listen_fds is False
    assert build({**base, "listen_fds": None}, {}).listen_fds is False
    assert build({**base, "listen_fds": True}, {}).listen_fds is True
    assert build({**base, "port": ("8080=5",)}, {}).ports[0].fd == 5
    with pytest.raises(ConfigError) as info:
        build({**base, "port": ("8080", "127.0.0.1:9090=4"), "listen_fds": True}, {})
    assert str(info.value) == (
        "--port=127.0.0.1:9090=4: =FD cannot be combined with --listen-fds "
        "(it puts the sockets on fds 3, 4, ... in order)"
    )


CHILD = r"""
import os, socket, sys
from start_server.children import _to_listen_fds
# Hold 3 and 4 with something else, then two sockets to be swapped onto them.
blockers = [os.open("/dev/null", os.O_RDONLY) for _ in range(2)]
assert blockers == [3, 4], blockers
a = socket.socket(socket.AF_INET, socket.SOCK_STREAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
keep_r, keep_w = os.pipe()
os.dup2(b.fileno(), 3)  # the unix socket on 3: it must end up on 4
fds, keep = _to_listen_fds((a.fileno(), 3), keep_w)
os.write(keep, b"pipe ok")
print(fds, os.read(keep_r, 100).decode())
for fd in (3, 4):
    s = socket.socket(fileno=os.dup(fd))
    print(fd, s.family.name, os.get_inheritable(fd)); s.close()
"""


def test_to_listen_fds_swaps_without_clobbering() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30, check=True
    ).stdout.splitlines()
    assert out == ["(3, 4) pipe ok", "3 AF_INET False", "4 AF_UNIX False"]
