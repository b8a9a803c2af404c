"""The hand-over across an exec (handover.py): what ``write`` writes ``read``
reads back once, the fd closed after; anything else is one clear refusal."""

from __future__ import annotations

import contextlib
import json
import os

import pytest

from start_server import handover
from start_server.handover import HandOverError


def _fd_holding(data: bytes) -> int:
    fd = os.memfd_create("test", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_what_is_written_is_read_back_once_and_the_fd_closed() -> None:
    fields = {"options": {"port": ["8080"], "command": ["app", "ü"]}, "path": ["/x"]}
    fd = handover.write("options", fields)
    assert os.get_inheritable(fd)
    doc = handover.read(handover.argument(fd), ("options",))
    assert doc == {"format": handover.FORMAT, "kind": "options", **fields}
    assert not _is_open(fd)


def test_a_document_larger_than_a_pipe_buffer_goes_over_whole() -> None:
    """A memory file, not a pipe: a long command line cannot block the writer."""
    fields = {"options": {"command": ["x" * 200_000]}, "path": []}
    fd = handover.write("options", fields)
    assert handover.read(handover.argument(fd), ("options",))["options"] == fields["options"]


def test_every_readable_format_is_read() -> None:
    for version in handover.READABLE:
        fd = _fd_holding(json.dumps({"format": version, "kind": "k"}).encode())
        assert handover.read(f"--hand-over={fd}", ("k",))["format"] == version


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "not a hand-over from start_server"),
        (b"garbage", "not a hand-over from start_server"),
        (b"\xff\xfe", "not a hand-over from start_server"),
        (b"[1]", "not a hand-over from start_server"),
        (b'{"kind": "options"}', "not a hand-over from start_server"),
        (
            b'{"format": 2, "kind": "options"}',
            "hand-over format 2 is not one this start_server reads (1)",
        ),
        (b'{"format": "1", "kind": "options"}', "hand-over format '1' is not one"),
        (b'{"format": 1}', "a hand-over of kind None, not options"),
        (b'{"format": 1, "kind": "state"}', "a hand-over of kind 'state', not options"),
    ],
)
def test_anything_else_is_refused_in_one_line_and_closed(data: bytes, why: str) -> None:
    fd = _fd_holding(data)
    with pytest.raises(HandOverError) as exc:
        handover.read(f"--hand-over={fd}", ("options",))
    message = str(exc.value)
    assert message.startswith(f"--hand-over={fd}: ") and why in message, message
    assert "\n" not in message
    assert not _is_open(fd)


@pytest.mark.parametrize(
    ("arg", "why"),
    [
        ("--hand-over=", "not a file descriptor"),
        ("--hand-over=-1", "not a file descriptor"),
        ("--hand-over=\u0663", "not a file descriptor"),  # a digit, but not ASCII
        ("--hand-over=99999999999999999999", "not a file descriptor"),
    ],
)
def test_a_value_that_names_no_open_fd_is_refused(arg: str, why: str) -> None:
    with pytest.raises(HandOverError, match=why):
        handover.read(arg, ("options",))


def test_an_fd_that_is_not_open_is_refused() -> None:
    fd = _fd_holding(b"{}")
    os.close(fd)
    with pytest.raises(HandOverError, match=f"--hand-over={fd}: cannot read the hand-over"):
        handover.read(f"--hand-over={fd}", ("options",))


def test_an_exec_that_fails_returns_with_the_hand_over_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The full process then serves as it is: nothing of the hand-over stays open."""
    from start_server import reexec

    monkeypatch.setattr("sys.executable", "/nonexistent/python3")
    reexec.exec_handing_over("options", {"options": {}, "path": []}, ["--port=8080"])
    assert not [f for f in _open_files() if "start_server-hand-over" in f]


def _open_files() -> list[str]:
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own fd, closed by now
            found.append(os.readlink(f"/proc/self/fd/{name}"))
    return found
