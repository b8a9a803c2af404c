"""The starter's log lines: their format, where they go, and tracebacks."""

from __future__ import annotations

import contextlib
import os
import time

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional


def _utc_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def format_line(message: str, number: Optional[int] = None, pid: Optional[int] = None) -> str:
    """``<UTC time> start_server[<pid>] [gen=N pid=P] message``: greppable, one line."""
    who = ""
    if number is not None:
        who = f"gen={number} " + (f"pid={pid} " if pid else "")
    return f"{_utc_now()} start_server[{os.getpid()}] {who}{message}\n"


# A log target opened but not yet on fd 2: the lines before the switch go there too.
_tee: list[int] = []


def tee(fd: Optional[int]) -> None:
    """Copy every line also to ``fd`` (None: stop), until the log target is fd 2 itself.

    So the first lines ("starting now", "listening on") reach both the
    terminal and the --log-file, which would otherwise start mid-story.
    """
    _tee[:] = [] if fd is None else [fd]


def log(message: str, number: Optional[int] = None, pid: Optional[int] = None) -> None:
    """One write(2) per line to fd 2, so lines never interleave with a child's."""
    line = format_line(message, number, pid).encode(errors="replace")
    for fd in (2, *_tee):
        with contextlib.suppress(OSError):
            os.write(fd, line)


def log_exception(message: str) -> None:
    """Log ``message`` and the exception being handled, with its traceback,
    one line each (so the log target gets it, whatever stderr has become)."""
    try:
        import traceback  # only when something went wrong: not kept resident otherwise

        lines = traceback.format_exc().splitlines()
    except Exception as exc:  # pragma: no cover - no memory, no fd to import with
        lines = [f"(no traceback: {exc!r})"]
    log(message)
    for line in lines:
        log("  " + line)
