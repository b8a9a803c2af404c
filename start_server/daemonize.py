"""``--daemonize`` (python-daemon, imported only here) and ``--log-file``.

The log target is a file (appended) or ``| command`` (a shell reading our
output on its stdin). After set-up, stdout and stderr of the starter, and so
of every generation, are that target. SIGUSR1 reopens a file (logrotate).
"""

from __future__ import annotations

import contextlib
import os
import select

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional


class LogError(Exception):
    """The log file or command could not be opened; names the option."""


class LogTarget:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        stripped = spec.lstrip()
        self.command: Optional[str] = stripped[1:].strip() if stripped.startswith("|") else None
        self.fd: Optional[int] = None
        self.pid: Optional[int] = None
        self.redirected = False  # fds 1 and 2 are the target

    @classmethod
    def adopt(cls, spec: str, d: Optional[dict[str, Any]]) -> LogTarget:
        """After an upgrade's exec: fds 1 and 2 are the target already."""
        t = cls(spec)
        t.redirected = True
        t.pid = None if d is None or d.get("pid") is None else int(d["pid"])
        return t

    def _open_file(self) -> int:
        from .files import open_own

        return open_own(self.spec, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def open(self) -> None:
        """Open the target; the starter's lines go to it too from now on (``tee``)."""
        from .log import tee

        self._open()
        tee(self.fd)

    def _open(self) -> None:
        from .files import cannot_open

        if self.command is None:
            try:
                self.fd = self._open_file()
            except OSError as exc:
                raise LogError(f"--log-file={self.spec}: {cannot_open(exc)}") from None
            return
        if not self.command:
            raise LogError(f"--log-file={self.spec}: empty command after '|'")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child, until exec
            try:
                from .signals import reset_for_child

                reset_for_child()
                os.dup2(read_end, 0)
                # Its own process group: a Ctrl-C meant for the starter must not
                # kill the logger before the starter's last lines reach it.
                os.setpgid(0, 0)
                os.execv("/bin/sh", ["sh", "-c", self.command])
            finally:
                os._exit(127)
        os.close(read_end)
        self.fd, self.pid = write_end, pid

    def redirect(self) -> None:
        """Make the target our stdout and stderr (inherited by every generation).

        From then on fds 1 and 2 *are* the target: no other fd of ours points
        to it. A private copy would be closed by ``--daemonize`` (python-daemon
        closes what it is not told to keep), and its number reused by another
        file, which a later reopen would then close in its place.
        """
        from .log import tee

        assert self.fd is not None
        tee(None)
        os.dup2(self.fd, 1)
        os.dup2(self.fd, 2)
        os.close(self.fd)
        self.fd = None
        self.redirected = True

    def reopen(self) -> None:
        """SIGUSR1: a rotated file is replaced by a fresh one at the same path."""
        from .files import cannot_open
        from .log import log

        if self.command is not None:
            log("received USR1: the log goes to a command, nothing to reopen")
            return
        try:
            fd = self._open_file()
        except OSError as exc:
            why = cannot_open(exc).replace("cannot open: ", "")
            log(f"received USR1: cannot reopen {self.spec}: {why}; keeping the old one")
            return
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        log(f"received USR1: reopened log file {self.spec}")

    def close(self) -> None:
        """Close our ends; give a log command up to 5 s to drain and exit."""
        from .log import tee

        tee(None)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.redirected:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
            self.redirected = False
        if self.pid is not None:
            _wait_exit(self.pid, 5.0)
            self.pid = None


def _wait_exit(pid: int, timeout: float) -> None:
    """Reap ``pid``, waiting at most ``timeout`` seconds (a pidfd, not a poll)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return
    try:
        select.select([pidfd], [], [], timeout)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    finally:
        os.close(pidfd)


class _Fd:
    """A file-like with only ``fileno()``, for python-daemon's stream redirects."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


def detaches(daemonize: bool) -> bool:
    """Whether ``--daemonize`` detaches: not as PID 1 of a PID namespace (a
    container's entry point). When PID 1 exits the kernel kills every process
    of its namespace, so a detached starter would die with its workers while
    the start said it succeeded; PID 1 stays in the foreground instead."""
    return daemonize and os.getpid() != 1


def daemonize(preserve: list[int], *, stdin_is_socket: bool) -> None:
    """fork, setsid, fork (python-daemon), keeping our sockets and files.

    The working directory and the umask stay what they were: the children run
    where and with the mode they would in the foreground, and relative paths
    in the options keep their meaning. stdin becomes /dev/null unless a
    socket was put on fd 0; stdout and stderr stay the log target.
    """
    import daemon  # python-daemon: imported only when --daemonize is used

    umask = os.umask(0)
    os.umask(umask)
    context = daemon.DaemonContext(
        working_directory=os.getcwd(),
        umask=umask,
        files_preserve=preserve,
        stdin=_Fd(0) if stdin_is_socket else None,
        stdout=_Fd(1),
        stderr=_Fd(2),
        signal_map={},  # the loop installs its own handlers
        prevent_core=False,
        detach_process=True,
    )
    context.open()
