"""The starter re-executes itself lean once its command line has been read.

Reading the options takes click (and, with ``--config``, PyYAML); supervising
takes neither, yet a Python process cannot unload a module. So the starter,
once the options are valid, execs ``python -S start_server/starter.py`` with
the same arguments and interpreter flags, and the options handed over in the
environment: the same pid, and neither click, PyYAML nor the site machinery in
the process that then runs for months (about 4 MB less resident memory). The
lean process finds the standard library first, then this package and the
directories the full process had (python-daemon for ``--daemonize`` is there),
in that order. It checks the options again (same files, same environment), so
a config error still comes out as one line.

Signals: an exec resets handlers to their defaults, and a HUP or TERM in that
window would kill the starter. The starter's signals are blocked from its
first instruction (``cli.main``, see signals.py), so across the exec too (the
mask and pending signals survive it), until the loop's handlers are in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional

MARKER = "START_SERVER_LEAN"  # JSON: the options, and the full process's import path
STARTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "starter.py")


class HandOverError(Exception):
    """``START_SERVER_LEAN`` is set but is not what ``exec_lean`` writes."""


def lean_argv(args: list[str]) -> Optional[list[str]]:
    """The command line of the lean process, or None where there is none to run
    (no interpreter path, or the package is not a directory of files)."""
    if not sys.executable or not os.path.isfile(STARTER):
        return None
    return [sys.executable, *interpreter_flags(_orig_argv()), "-S", STARTER, *args]


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
    """Exec the starter again, lean; returns only when that is not possible."""
    argv = lean_argv(args)
    if argv is None:
        return
    env = dict(os.environ)
    env[MARKER] = json.dumps({"options": dict(options), "path": [p for p in sys.path if p]})
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):  # then this process serves, as it is
        os.execve(argv[0], argv, env)


def take_options() -> Optional[dict[str, Any]]:
    """In the lean process: the options handed over (the marker is removed from
    the environment, which the server program inherits); None otherwise."""
    raw = os.environ.pop(MARKER, None)
    if raw is None:
        return None
    try:
        handed = json.loads(raw)
        options: dict[str, Any] = handed["options"]
        path = handed["path"]
        if not isinstance(options, dict) or not all(isinstance(p, str) for p in path):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise HandOverError(f"{MARKER}: not a hand-over from start_server") from None
    sys.path.extend(p for p in path if p not in sys.path)
    return options
