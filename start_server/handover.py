"""What one start_server process hands to the next across an exec: a JSON
document in an inherited file, never in the environment or the command line.

The writer puts ``{"format": 1, "kind": ..., ...}`` in an anonymous memory
file (memfd) the exec inherits, and names its fd on the new process's command
line as ``--hand-over=FD``; the reader reads it once and closes it, so the
document is gone from the process once read (``/proc/PID/environ`` never held
it). ``kind`` says what it carries (``options``: the lean re-exec of
reexec.py); a later kind goes through the same two functions. A document
whose format this code does not read, or that is not one at all, is refused
with one line naming the option and its value.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Any

OPTION = "--hand-over"
FORMAT = 1  # what ``write`` writes
READABLE = (1,)  # what ``read`` accepts: this format, and older ones still understood


class HandOverError(Exception):
    """The hand-over fd is not open, or holds nothing ``write`` would write."""


def write(kind: str, fields: dict[str, Any]) -> int:
    """An inheritable fd holding the document, positioned at its start; the
    caller closes it after the exec failed (an exec that succeeds keeps it)."""
    data = json.dumps({"format": FORMAT, "kind": kind, **fields}).encode()
    fd = os.memfd_create("start_server-hand-over", 0)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        os.set_inheritable(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def argument(fd: int) -> str:
    return f"{OPTION}={fd}"


def read(arg: str, kinds: Collection[str]) -> dict[str, Any]:
    """The document named by ``arg`` (``--hand-over=FD``), of one of ``kinds``;
    its fd is closed whatever it held."""
    value = arg.partition("=")[2]
    where = f"{OPTION}={value}"
    if not value.isdigit() or not value.isascii() or int(value) >= 1 << 31:
        raise HandOverError(f"{where}: not a file descriptor")
    fd = int(value)
    try:
        with open(fd, "rb", closefd=True) as fh:
            raw = fh.read()
    except OSError as exc:
        raise HandOverError(f"{where}: cannot read the hand-over: {exc}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "format" not in doc:
        raise HandOverError(f"{where}: not a hand-over from start_server")
    if doc["format"] not in READABLE:
        raise HandOverError(
            f"{where}: hand-over format {doc['format']!r} is not one this start_server "
            f"reads ({', '.join(map(str, READABLE))})"
        )
    if doc.get("kind") not in kinds:
        raise HandOverError(
            f"{where}: a hand-over of kind {doc.get('kind')!r}, not {' or '.join(kinds)}"
        )
    return doc
