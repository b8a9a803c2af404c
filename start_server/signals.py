"""Which signals the starter uses, which it ignores, and when they are held back.

``USED`` are the signals the loop turns into events. ``STRAY`` are the others
whose default action would end or stop the starter: each is ignored with one
log line, since a starter killed by a stray ``kill -ALRM`` would leave its
workers serving with nobody managing them. (Faults the kernel raises, such as
SEGV, FPE or ABRT, are not strays: a real fault must still end the process.)
``SCALING`` (TTIN, TTOU) add or retire one worker (scaling.py), as gunicorn's
do, when the starter has no controlling terminal (systemd, ``--daemonize``, a
container, ``setsid``). With one they are the terminal's job control, ignored
without a line as before: the kernel sends TTOU to a background job that
writes to its terminal (``stty tostop``), and with a handler that write would
be interrupted and retried forever, one signal each time; ignored, the
kernel lets it through.

Both sets are blocked from the starter's first instruction (``cli.main``)
until the loop's handlers are in place: a HUP sent by ``ExecReload`` right
after a start, while the options are read or across the lean re-exec (the
mask survives exec), waits for the loop instead of killing the starter. A
client (``--restart``, ``--stop``, ``--status``) unblocks them at once.
"""

from __future__ import annotations

import os
import signal

TYPE_CHECKING = False  # typing is not loaded at run time
if TYPE_CHECKING:
    from typing import Any

USED = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGCHLD,
    signal.SIGUSR1,
    signal.SIGUSR2,  # upgrade start_server in place (upgrade.py)
)

_STRAY_NAMES = (
    "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGXFSZ", "SIGIO",
    "SIGPWR", "SIGSTKFLT", "SIGTSTP",
)
STRAY = tuple(
    [getattr(signal, n) for n in _STRAY_NAMES if hasattr(signal, n)]
    + list(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
)

SCALING = (signal.SIGTTIN, signal.SIGTTOU)
HELD = USED + STRAY + SCALING


def has_terminal() -> bool:
    """Whether the starter has a controlling terminal (then TTIN and TTOU are job control's)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # ENXIO: none
        return False
    os.close(fd)
    return True


def drain(wake: Any) -> list[int]:
    """The signal numbers the wake-up socket (``signal.set_wakeup_fd``) holds, read
    until it is empty (it is non-blocking)."""
    out: list[int] = []
    while True:
        try:
            data = wake.recv(4096)
        except BlockingIOError:
            return out
        if not data:
            return out
        out.extend(data)


def block() -> None:
    """Hold the starter's signals back (pending) until ``unblock``."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD)


def unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)


def ignore_pipe() -> None:
    """SIGPIPE: a write to a closed pipe (a log command that exited) is an
    EPIPE error, handled where it happens. Python ignores it already unless
    embedded; made sure of here."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def reset_for_child() -> None:
    """In a child between fork and exec: default dispositions (an ignored
    signal would stay ignored across exec), no wake-up fd, nothing blocked."""
    signal.set_wakeup_fd(-1)
    for signum in (*HELD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
