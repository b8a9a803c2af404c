"""The starter re-executes itself lean once its command line has been read.

Reading the options takes click (and, with ``--config``, PyYAML); supervising
takes neither, yet a Python process cannot unload a module. So the starter,
once the options are valid, execs the same command line again under
``python -S`` with the options handed over in the environment: the same pid,
the same argv for ps, and neither click, PyYAML nor the site machinery in
the process that then runs for months (about 5 MB less resident memory).
The options are checked again there (same files, same environment), so a
config error still comes out as one line.

Signals: an exec resets handlers to their defaults, and a HUP or TERM in that
window would kill the starter. They are blocked across the exec (the mask and
pending signals survive it) and unblocked by the loop once its handlers are
in place.
"""

from __future__ import annotations

import json
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional

MARKER = "START_SERVER_LEAN"  # JSON: the options, and PYTHONPATH as it was before


class HandOverError(Exception):
    """``START_SERVER_LEAN`` is set but is not what ``exec_lean`` writes."""


def lean_argv(args: list[str]) -> Optional[list[str]]:
    """The interpreter's own command line with ``-S`` added, or None when this
    process cannot be re-run that way (isolated mode ignores PYTHONPATH; an
    embedding caller's argv is not ours to re-run)."""
    orig = list(getattr(sys, "orig_argv", ()))
    if not orig or not sys.executable or sys.flags.isolated or sys.flags.ignore_environment:
        return None
    if args and orig[-len(args) :] != args:
        return None
    return [sys.executable, "-S", *orig[1:]]


def exec_lean(args: list[str], options: Mapping[str, Any]) -> None:
    """Exec the starter again, lean; returns only when that is not possible."""
    argv = lean_argv(args)
    if argv is None:
        return
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    before = os.environ.get("PYTHONPATH")
    # Without site, the import path is the standard library plus PYTHONPATH:
    # this package, and the directories the site machinery had added (python-
    # daemon for --daemonize lives there).
    paths = [package_parent, *(p for p in sys.path if p and "-packages" in p)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env[MARKER] = json.dumps({"options": dict(options), "pythonpath": before})
    from .loop import WAKE_SIGNALS  # what the loop handles, and unblocks

    signal.pthread_sigmask(signal.SIG_BLOCK, WAKE_SIGNALS)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, WAKE_SIGNALS)


def take_options() -> Optional[dict[str, Any]]:
    """In the lean process: the options handed over, the environment restored
    (the server program must not inherit our PYTHONPATH); None otherwise."""
    raw = os.environ.pop(MARKER, None)
    if raw is None:
        return None
    try:
        handed = json.loads(raw)
        options: dict[str, Any] = handed["options"]
        before = handed["pythonpath"]
        if not isinstance(options, dict) or not isinstance(before, (str, type(None))):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise HandOverError(f"{MARKER}: not a hand-over from start_server") from None
    if before is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = before
    return options
