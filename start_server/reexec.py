"""The starter re-executes itself lean once its command line has been read.

Reading the options takes click (and, with ``--config``, PyYAML); supervising
takes neither, yet a Python process cannot unload a module. So the starter,
once the options are valid, execs ``python -S start_server/starter.py
--hand-over=FD ARGS``: the same arguments and interpreter flags, the same pid,
and the options handed over in an inherited memory file (handover.py) that
the lean process reads once and closes. They are never in the environment:
``/proc/PID/environ`` does not show them, and no server program inherits them.
Neither click, PyYAML nor the site machinery is in the process that then runs
for months (about 4 MB less resident memory). The lean process finds the
standard library first, then this package and the directories the full
process had (python-daemon for ``--daemonize`` is there), in that order. It
checks the options again (same files, same environment), so a config error
still comes out as one line.

Signals: an exec resets handlers to their defaults, and a HUP or TERM in that
window would kill the starter. The starter's signals are blocked from its
first instruction (``cli.main``, see signals.py), so across the exec too (the
mask and pending signals survive it), until the loop's handlers are in place.
"""

from __future__ import annotations

import contextlib
import os
import sys

from . import handover

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

KIND = "options"  # the hand-over's kind: the options, and the full process's import path
STARTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "starter.py")


def can_exec_lean() -> bool:
    """False where there is no lean process to run (no interpreter path, or
    the package is not a directory of files)."""
    return bool(sys.executable) and os.path.isfile(STARTER)


def lean_argv(hand_over: str, args: list[str]) -> list[str]:
    """The lean process's command line: the hand-over first, then the arguments."""
    return [sys.executable, *interpreter_flags(_orig_argv()), "-S", STARTER, hand_over, *args]


def _orig_argv() -> list[str]:
    """The interpreter's own command line: ``sys.orig_argv`` (3.10+), else the
    kernel's copy in /proc (Python 3.9), so flags survive there too."""
    orig: list[str] = getattr(sys, "orig_argv", [])
    if orig:
        return orig
    try:
        with open("/proc/self/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return []
    return [os.fsdecode(a) for a in raw.split(b"\0")[:-1]]


def interpreter_flags(orig_argv: list[str]) -> list[str]:
    """The options given to the interpreter itself (``-I``, ``-X utf8``, ``-O`` ...),
    up to the script or ``-m``/``-c``; ``-S`` and ``-i`` left out."""
    flags: list[str] = []
    rest = iter(orig_argv[1:])
    for arg in rest:
        if arg in ("-m", "-c", "-", "--") or not arg.startswith("-"):
            break
        if arg in ("-S", "-i"):
            continue
        flags.append(arg)
        if arg in ("-X", "-W"):  # their value is the next argument
            flags.append(next(rest, ""))
    return flags


def exec_lean(args: list[str], options: Mapping[str, Any]) -> None:
    """Exec the starter again, lean; returns only when that is not possible
    (then this process serves, as it is)."""
    exec_handing_over(KIND, {"options": dict(options), "path": [p for p in sys.path if p]}, args)


def exec_handing_over(kind: str, fields: dict[str, Any], args: list[str]) -> None:
    """Exec the lean process with ``args`` and a hand-over of ``kind``
    (handover.py); returns only when that is not possible, the fd closed."""
    if not can_exec_lean():
        return
    try:
        fd = handover.write(kind, fields)
    except OSError:  # no memfd (an old kernel, a seccomp filter)
        return
    argv = lean_argv(handover.argument(fd), args)
    flush_std()
    with contextlib.suppress(OSError):
        os.execv(argv[0], argv)
    os.close(fd)


def flush_std() -> None:
    """Before an exec, what Python holds for fds 1 and 2 goes out. Either
    stream is None where its fd was closed when Python started (``>&-``)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def is_lean(args: list[str]) -> bool:
    """``args`` are the lean process's: they start with the hand-over."""
    return bool(args) and args[0].startswith(handover.OPTION + "=")


def take_options(args: list[str]) -> dict[str, Any]:
    """In the lean process: the options handed over in ``args[0]``; the full
    process's import path is added to this one's."""
    return options_of(handover.read(args[0], (KIND,)), args[0])


def options_of(doc: dict[str, Any], arg: str) -> dict[str, Any]:
    """The options of a hand-over ``doc`` read from ``arg``; the full process's
    import path is added to this one's."""
    options = doc.get("options")
    path = doc.get("path")
    if (
        not isinstance(options, dict)
        or not isinstance(path, list)
        or not all(isinstance(p, str) for p in path)
    ):
        raise handover.HandOverError(f"{arg}: not a hand-over of options from start_server")
    sys.path.extend(p for p in path if p not in sys.path)
    return options
