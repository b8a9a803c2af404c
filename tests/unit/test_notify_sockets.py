"""notify.py: who may notify, and a flood read within a budget. Real sockets, real processes."""

from __future__ import annotations

import array
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from start_server import notify_sockets as notify
from start_server.core import Generation, State, Worker


def test_parse_notify_takes_key_value_lines_and_skips_the_rest() -> None:
    data = b"READY=1\nSTATUS=a=b\n\nnoise\n=x\nBARRIER=1\xff"
    assert notify.parse_notify(data) == {"READY": "1", "STATUS": "a=b", "BARRIER": "1\ufffd"}


@given(st.binary(max_size=4096))
def test_parse_notify_takes_any_datagram(data: bytes) -> None:
    fields = notify.parse_notify(data)
    for key, value in fields.items():
        assert key and "=" not in key and "\n" not in key and "\n" not in value


@given(st.lists(st.tuples(st.sampled_from([socket.SOL_SOCKET, 0]),
                          st.just(socket.SCM_CREDENTIALS), st.binary(max_size=24))))
def test_sender_reads_credentials_of_any_shape(anc: list[tuple[int, int, bytes]]) -> None:
    pid, uid, alive = notify.sender(anc)
    assert alive is None
    if (pid, uid) != (0, -1):
        assert any(level == socket.SOL_SOCKET and len(p) >= 12 for level, _k, p in anc)


def test_belongs_places_the_tree_and_nothing_else() -> None:
    me = os.getpid()
    assert notify.belongs(me, me) is True
    assert notify.belongs(0, me) is False  # a sender we cannot see: never ours
    assert notify.belongs(-1, me) is False
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, start_new_session=True)
    try:
        assert notify.belongs(child.pid, me) is True  # a descendant
        assert notify.belongs(me, child.pid) is False  # an ancestor is not in the tree
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
    assert notify.belongs(child.pid, me) is None  # gone: cannot be placed


Sockets = tuple[notify.NotifySockets, selectors.DefaultSelector]


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    sel = selectors.DefaultSelector()
    socks = notify.NotifySockets(sel)
    yield socks, sel
    socks.close()
    sel.close()


def _generation(number: int, pid: int) -> Generation:
    g = Generation(number, State.STARTING, 0.0)
    g.workers.append(Worker(number, 0, pid, State.STARTING, 0.0))
    return g


def _send(address: str, count: int, message: bytes = b"READY=1") -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(message, address)


def test_the_socket_is_a_private_file_removed_with_its_generation(sockets: Sockets) -> None:
    socks, _sel = sockets
    address = socks.address(1)
    assert address == socks.address(1)  # made once
    directory = os.path.dirname(address)
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(address).st_mode & 0o777 == 0o600
    socks.prune({2})
    assert not os.path.exists(address)
    socks.close()
    assert not os.path.exists(directory)


@pytest.fixture
def other() -> Iterator[int]:
    """A live process we are no part of (not an ancestor, not our group)."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE, start_new_session=True)
    yield proc.pid
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def test_the_generation_is_heard_and_a_stranger_is_not(
    sockets: Sockets, other: int, capfd: pytest.CaptureFixture[str]
) -> None:
    socks, _sel = sockets
    address = socks.address(1)
    _send(address, 1, b"READY=1\nSTATUS=up")
    got = socks.read(1, _generation(1, os.getpid()), 100.0)
    assert [(n.number, n.fields, n.pid) for n in got] == [
        (1, {"READY": "1", "STATUS": "up"}, os.getpid())]
    _send(address, 3)
    assert socks.read(1, _generation(1, other), 100.5) == []  # we are not its tree
    err = capfd.readouterr().err
    assert f"ignored 3 notifications to generation 1 from outside it (last: pid {os.getpid()}, " \
        f"uid {os.getuid()}: not in its process tree)" in err


def _ignored(lines: list[str]) -> int:
    return sum(1 if "ignored a " in x else int(x.split("ignored ")[1].split()[0]) for x in lines)


def test_a_flood_is_read_within_the_budget_and_summarised_once_a_second(
    sockets: Sockets, other: int, capfd: pytest.CaptureFixture[str]
) -> None:
    socks, sel = sockets
    address = socks.address(1)
    stranger = _generation(1, other)
    ch = socks.channels[1]
    now = 1000.0
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        while not ch.paused:
            try:
                s.sendto(b"READY=1", address)
                sent += 1
            except BlockingIOError:  # the queue is full: the loop would read a batch
                before = ch.reads
                assert socks.read(1, stranger, now) == []
                assert ch.reads - before <= notify.BATCH
    assert ch.reads == notify.BUDGET
    assert len(sel.get_map()) == 0  # not watched until the second is over
    assert socks.next_deadline() == now + notify.WINDOW
    socks.run_due(now + 0.5)
    assert ch.paused
    # What is still queued is read in the next seconds, a budget each.
    t = now + notify.WINDOW
    socks.run_due(t)
    while True:
        assert not ch.paused and len(sel.get_map()) == 1
        before = ch.reads
        assert socks.read(1, stranger, t) == []
        if ch.paused:
            t += notify.WINDOW
            socks.run_due(t)
        elif ch.reads - before < notify.BATCH:
            break  # the queue is empty
    assert socks.next_deadline() == t + notify.WINDOW  # the last drops' summary
    socks.run_due(t + notify.WINDOW)
    assert socks.next_deadline() is None
    lines = [x for x in capfd.readouterr().err.splitlines() if "ignored" in x]
    # One line at the first drop, then at most one a second.
    assert len(lines) <= (t - now) / notify.WINDOW + 2, lines
    assert _ignored(lines) == sent, (sent, lines)


def test_the_directory_is_made_in_tmpdir_unless_another_user_could_swap_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine = Path(tempfile.mkdtemp(dir="/tmp"))  # short: a socket path has 108 bytes
    try:
        theirs = mine / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
        for base, expected in ((mine, str(mine)), (theirs, "/tmp")):
            monkeypatch.setenv("TMPDIR", str(base))
            with selectors.DefaultSelector() as sel:
                socks = notify.NotifySockets(sel)
                try:
                    assert os.path.dirname(os.path.dirname(socks.address(1))) == expected
                finally:
                    socks.close()
    finally:
        shutil.rmtree(mine)


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_fd_that_comes_with_a_datagram_is_closed(sockets: Sockets, other: int) -> None:
    """The sender's pidfd, and fds a sender passes (systemd-notify's barrier) whose
    closing is what the sender waits for."""
    socks, _sel = sockets
    address = socks.address(1)
    read_end, write_end = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", [write_end]))], 0, address)
        os.close(write_end)  # only the datagram holds it now
        for _ in range(5):  # a socket's queue may hold as few as 10 (net.unix.max_dgram_qlen)
            s.sendto(b"READY=1", address)
    before = _fds()
    assert socks.read(1, _generation(1, other), 0.0) == []
    assert _fds() == before
    assert os.read(read_end, 1) == b""  # the barrier's end was closed: the sender goes on
    os.close(read_end)


def test_a_sender_gone_before_its_datagram_is_read_is_dropped(
    sockets: Sockets, capfd: pytest.CaptureFixture[str]
) -> None:
    socks, _sel = sockets
    address = socks.address(1)
    child = subprocess.run(
        [sys.executable, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX, "
         "socket.SOCK_DGRAM); s.sendto(b'READY=1', sys.argv[1]); print(__import__('os')"
         ".getpid())", address], capture_output=True, text=True, check=True, timeout=30)
    # The sender was our child: by its pid alone it would be in our tree, were it alive.
    assert socks.read(1, _generation(1, os.getpid()), 0.0) == []
    assert f"(last: pid {child.stdout.strip()}, uid {os.getuid()}: already exited)" in \
        capfd.readouterr().err


def test_a_directory_removed_meanwhile_is_made_again(sockets: Sockets) -> None:
    """A /tmp cleaner may remove it between deploys: the next generation still gets one."""
    socks, _sel = sockets
    first = socks.address(1)
    socks.prune({2})
    os.rmdir(os.path.dirname(first))
    second = socks.address(2)
    assert os.path.dirname(second) != os.path.dirname(first)
    _send(second, 1)
    assert [n.pid for n in socks.read(2, _generation(2, os.getpid()), 0.0)] == [os.getpid()]
