"""The control socket (``--scale``, ``--restart --worker``): who can reach it, who
counts, what a request looks like. Real sockets, a real unprivileged sender."""

from __future__ import annotations

import os
import selectors
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
from unprivileged import NOBODY, Kit, kit

from start_server.control_socket import ControlSocket, parse, request
from start_server.events import Asked
from start_server.notify_sockets import NotifySockets

__all__ = ["kit"]  # the fixture, used by name
SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "try:\n"
    "    s.sendto(sys.argv[2].encode(), sys.argv[1].replace('@', '\\0', 1))\n"
    "except OSError as exc:\n"
    "    print(type(exc).__name__)\n"
    "else:\n"
    "    print('sent')\n"
)


@pytest.fixture
def control() -> Iterator[ControlSocket]:
    sel = selectors.DefaultSelector()
    notify = NotifySockets(sel)
    ctl = ControlSocket(sel, notify)
    ctl.open()
    try:
        yield ctl
    finally:
        ctl.close()
        notify.close()
        sel.close()


def send_as(address: str, data: str, kit: Kit | None = None) -> str:
    """Send ``data`` from another process: ours, or user nobody's (``kit``)."""
    who: dict[str, object] = {}
    if kit is not None:
        who = {"user": NOBODY.pw_uid, "group": NOBODY.pw_gid, "extra_groups": []}
    r = subprocess.run(
        [kit.python if kit else sys.executable, "-c", SEND, address, data],
        capture_output=True, text=True, timeout=30, check=False, **who,  # type: ignore[call-overload]
    )
    return str(r.stdout.strip() or r.stderr)


@pytest.mark.parametrize(
    "data",
    [b"start_server/1 abc123 scale +2", b"start_server/1 abc123 worker 3",
     b"start_server/1 abc123 scale 4096"],
)
def test_well_formed_requests(data: bytes) -> None:
    assert parse(data) is not None
    id, kind, value = parse(data)  # type: ignore[misc]
    assert request(id, kind, value) == data


@pytest.mark.parametrize(
    "data",
    [b"", b"start_server/1", b"start_server/2 abc scale 2", b"start_server/1 abc stop 2",
     b"start_server/1 a-b scale 2", b"start_server/1 abc scale", b"start_server/1 abc scale 2 3",
     b"start_server/1 abc scale \x1b[2J", "start_server/1 abc scale ٣".encode(),
     b"\xff\xfe", b"start_server/1 " + b"a" * 33 + b" scale 2"],
)
def test_malformed_requests(data: bytes) -> None:
    assert parse(data) is None


def test_the_socket_is_private_and_the_starters_own(control: ControlSocket) -> None:
    assert control.path is not None and control.address == control.path
    st = os.lstat(control.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    parent = os.lstat(os.path.dirname(control.path))
    assert stat.S_IMODE(parent.st_mode) == 0o700 and parent.st_uid == os.geteuid()


def test_a_request_of_the_starters_own_user_counts(control: ControlSocket) -> None:
    assert control.address is not None
    assert send_as(control.address, "start_server/1 ab12 scale +1") == "sent"
    assert send_as(control.address, "start_server/1 ab13 worker x y") == "sent"  # malformed
    assert control.read() == [Asked("ab12", "scale", "+1")]


def test_another_user_cannot_even_connect(control: ControlSocket, kit: Kit) -> None:
    assert control.address is not None
    assert send_as(control.address, "start_server/1 ab12 scale 1", kit) == "PermissionError"
    assert control.read() == []


def test_another_users_request_is_dropped_where_it_can_connect(
    control: ControlSocket, kit: Kit
) -> None:
    """Behind the directory's mode, the kernel's credentials: a socket someone
    opened up (or an abstract one) still counts only root and the starter's user."""
    assert control.path is not None
    os.chmod(os.path.dirname(control.path), 0o755)
    os.chmod(control.path, 0o666)
    assert send_as(control.path, "start_server/1 ab12 scale 1", kit) == "sent"
    assert control.read() == []
