"""Our children: spawn, reap, signal, stop; and being the subreaper of theirs.

Children are made with fork + exec rather than ``subprocess``: a ``Popen``
object would reap behind our back (its ``__del__`` and ``_cleanup`` call
waitpid), and the starter has exactly one owner of waitpid, ``reap()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterable, Mapping

from . import signals
from .identity import Identity, become
from .spec import signal_name

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import NoReturn, Optional


def stop_all(pids: Iterable[int], signum: int, grace: float) -> None:
    """Signal each pid's process group, wait up to ``grace`` seconds for each to
    exit, then kill what is left. For a starter that can no longer trust its
    own state: no selector, no core, only the kernel."""
    todo = sorted(set(pids))
    for pid in todo:
        _kill_tree(pid, signum)
    deadline = time.monotonic() + grace
    for pid in todo:
        _wait_gone(pid, max(0.0, deadline - time.monotonic()))
    for pid in todo:
        _kill_tree(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0)


def _kill_tree(pid: int, signum: int) -> None:
    """A worker leads its process group; a leftover may not: then the pid alone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        kill(pid, signum)
    except PermissionError:
        pass


def _wait_gone(pid: int, timeout: float) -> None:
    """Reap our child ``pid``, waiting at most ``timeout`` s (a pidfd: no poll)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if fd is not None:
            select.select([fd], [], [], timeout)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    finally:
        if fd is not None:
            os.close(fd)


def start(
    command: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Optional[str],
    pass_fds: Iterable[int],
    *,
    listen_fds: bool = False,
    user: Optional[Identity] = None,
) -> tuple[int, int]:
    """fork + exec the command in its own process group, without waiting for
    the exec: (its pid, the read end of its exec report, non-blocking).

    The child reports on a close-on-exec pipe: EOF alone once it has exec'd,
    or one line on what failed, then it exits 127 (spawns.py reads it), so
    "command not found" is one clear error, not a mysterious early exit.
    With ``listen_fds`` (systemd's protocol, sd_listen_fds(3)) the child moves
    ``pass_fds`` to fds 3, 4, ... in their order and sets ``LISTEN_PID`` to its
    own pid, which only the child can know; the caller's ``env`` carries
    ``LISTEN_FDS``, ``LISTEN_FDNAMES`` and a ``SERVER_STARTER_PORT`` naming
    fds 3, 4, ... With ``user`` (``--user``, ``--group``) the child takes that
    identity once its sockets are in place, before the chdir and the exec.
    """
    fds = tuple(pass_fds)
    groups = None if user is None else user.current_groups()  # NSS in the parent, not the child
    read_end, write_end = os.pipe()  # both close-on-exec
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child, until exec
        _exec_child(command, env, cwd, fds, (read_end, write_end),
                    listen_fds=listen_fds, user=user, groups=groups)
    os.close(write_end)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also from the parent: no window where a kill misses
    os.set_blocking(read_end, False)
    return pid, read_end


def _exec_child(
    command: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Optional[str],
    fds: tuple[int, ...],
    pipe: tuple[int, int],
    *,
    listen_fds: bool,
    user: Optional[Identity],
    groups: Optional[tuple[int, ...]],
) -> NoReturn:  # pragma: no cover - the child, until exec
    """In the child: its own process group, the sockets, the identity, the
    directory, then exec; what failed, if anything, goes to the parent
    through the pipe's write end (close-on-exec: an exec closes it empty)."""
    read_end, write_end = pipe
    try:
        os.close(read_end)
        os.setpgid(0, 0)
        signals.reset_for_child()
        step = "pass the sockets to"
        if listen_fds:
            fds, write_end = _to_listen_fds(fds, write_end)
            env = {**env, "LISTEN_PID": str(os.getpid())}
        for fd in fds:
            os.set_inheritable(fd, True)
        if user is not None:
            step = "switch to"
            become(user, groups)
        step = "chdir to"  # as the user: it must be able to
        if cwd is not None:
            os.chdir(cwd)
        step = "execute"
        os.execvpe(command[0], list(command), dict(env))
    except BaseException as exc:
        target: object = cwd if step == "chdir to" else command[0]
        if step == "switch to" and user is not None:
            target = f"user {user.name or user.uid} group {user.gid}"
        reason = exc.strerror if isinstance(exc, OSError) else repr(exc)
        with contextlib.suppress(BaseException):
            os.write(write_end, f"cannot {step} {target!r}: {reason}".encode())
    finally:
        os._exit(127)


def _to_listen_fds(fds: tuple[int, ...], keep: int) -> tuple[tuple[int, ...], int]:
    """In the child: put ``fds`` on 3, 4, ... in order; return them and where ``keep`` went.

    Everything first moves above every fd involved, so that no dup2 clobbers
    a socket still to be moved, nor ``keep`` (the exec-error pipe); whatever
    else sat on 3, 4, ... is the starter's own and close-on-exec anyway.
    """
    first = 3  # SD_LISTEN_FDS_START
    floor = max((*fds, keep, first + len(fds) - 1)) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in fds]
    keep = fcntl.fcntl(keep, fcntl.F_DUPFD_CLOEXEC, floor)
    placed = []
    for i, fd in enumerate(high):
        os.dup2(fd, first + i, inheritable=False)
        os.close(fd)
        placed.append(first + i)
    return tuple(placed), keep


def reap() -> list[tuple[int, int]]:
    """Every child that has exited, as (pid, raw wait status). The only waitpid."""
    out = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        out.append((pid, status))
    return out


def describe(status: int) -> str:
    """``exit code 1`` / ``killed by SIGKILL`` (``, core dumped``)."""
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        core = ", core dumped" if os.WCOREDUMP(status) else ""
        return f"killed by SIG{signal_name(sig)}{core}"
    return f"wait status {status}"


def kill(pid: int, signum: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def become_subreaper() -> bool:
    """Linux: orphans of our children are re-parented to us, so we reap and stop them."""
    import ctypes

    pr_set_child_subreaper = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # libc is loaded already
        return int(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
