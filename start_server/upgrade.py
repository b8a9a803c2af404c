"""Upgrading the running starter in place (SIGUSR2, ``start_server --upgrade``).

The starter re-executes the start_server now installed for its interpreter:
the same pid (the pid file and its lock, systemd's MAINPID stay valid), the
same listening sockets, the same children. What the new code needs is handed
over (handover.py) as a document of kind ``state``: the options, the import
path, the core's state (core.py and the data classes' ``to_dict``), and the fd
of every socket and file it adopts. Times are the monotonic clock's readings:
an exec keeps the process and the boot, so a timer keeps its remaining time.

Before the exec, the new install is checked in a short child process: it
imports start_server, reads this very document (``--check``) and prints its
version. If that fails, nothing is exec'd and the running code carries on;
so it does if the exec itself fails. Signals are held back from the check to
the new loop (the mask and pending signals survive an exec).
"""

from __future__ import annotations

import os
import sys
import time

from . import __version__, handover, signals

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Optional, Protocol, Union

    from .config import Config
    from .core import Supervisor
    from .files import PidFile, StatusFile
    from .notify_sockets import NotifySockets
    from .sockets import Bound

    class Starter(Protocol):
        """What an upgrade reads of the loop (``loop.Loop``; not imported: no cycle)."""

        bound: list[Bound]
        status: Optional[StatusFile]
        notify: NotifySockets
        helper_pids: tuple[int, ...]
        pidfile: Optional[PidFile]
        logs: Optional[Any]
        sup: Supervisor
        upgrades: dict[str, Any]
    from .spec import PathSpec, PortSpec

KIND = "state"
CHECK = "--check"  # the check child's argument after the hand-over
CHECK_TIMEOUT = 30.0


class UpgradeRefused(Exception):
    """The upgrade cannot be done; the message is its one log line."""


# ---- the running (old) code -------------------------------------------------


def state(starter: Starter, options: Mapping[str, Any]) -> dict[str, Any]:
    """The document the new code resumes from."""
    pidfile, logs, status = starter.pidfile, starter.logs, starter.status
    return {
        "version": __version__,
        "options": dict(options),
        "path": [p for p in sys.path if p],
        "core": starter.sup.to_dict(),
        "bound": [
            {"key": b.key, "fd": b.fd, "ident": b.ident, "name": b.name, "adopted": b.adopted}
            for b in starter.bound
        ],
        "pid_file": None if pidfile is None else pidfile.handed_over(),
        "status_written": status is not None and status.written,
        "log": None if logs is None else {"pid": logs.pid},
        "helper_pids": list(starter.helper_pids),
        "notify": starter.notify.handed_over(),
        "upgrades": starter.upgrades,
    }


def _fds(doc: Mapping[str, Any]) -> list[int]:
    fds = [b["fd"] for b in doc["bound"]] + [fd for _n, fd, _p in doc["notify"]["channels"]]
    if doc["pid_file"] is not None:
        fds.append(doc["pid_file"]["fd"])
    return fds


def check(fd: int) -> None:
    """Run the new install on the hand-over in ``fd`` with ``--check``; its
    version on success, UpgradeRefused with its last line of error otherwise."""
    import subprocess

    from .reexec import can_exec_lean, lean_argv

    if not can_exec_lean():
        raise UpgradeRefused("start_server is not installed as files: nothing to re-execute")
    argv = lean_argv(handover.argument(fd), [CHECK])
    try:
        done = subprocess.run(
            argv, check=False, pass_fds=(fd,), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=CHECK_TIMEOUT, env={**os.environ, "NOTIFY_SOCKET": ""},
        )
    except subprocess.TimeoutExpired:
        raise UpgradeRefused(f"the new install did not answer within {CHECK_TIMEOUT:g} s") from None
    except OSError as exc:
        raise UpgradeRefused(f"cannot run the new install: {exc}") from None
    finally:
        os.lseek(fd, 0, os.SEEK_SET)  # the child read it through the same description
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or not out:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise UpgradeRefused(f"the new install failed its check: {why}")


def execute(starter: Starter, options: Mapping[str, Any], wake: Any) -> None:
    """Check the new install, then exec it; returns (having logged why) when
    either cannot be done: the running code carries on."""
    from .reexec import flush_std, lean_argv

    if starter.sup.stopping:
        raise UpgradeRefused("the starter is stopping")
    doc = state(starter, options)
    try:
        fd = handover.write(KIND, doc)
    except OSError as exc:
        raise UpgradeRefused(f"cannot write the hand-over: {exc.strerror or exc}") from None
    try:
        check(fd)
        fds = _fds(doc)
        signals.block()
        try:
            for signum in signals.drain(wake):  # pending again, for the new loop
                os.kill(os.getpid(), signum)
            for n in fds:
                os.set_inheritable(n, True)
            argv = lean_argv(handover.argument(fd), [])
            flush_std()
            os.execv(argv[0], argv)
        except OSError as exc:
            for n in fds:
                os.set_inheritable(n, False)
            raise UpgradeRefused(f"cannot execute the new install: {exc}") from None
        finally:
            signals.unblock()
    finally:
        os.close(fd)


# ---- the new code -------------------------------------------------------------


def take(arg: str) -> dict[str, Any]:
    """The hand-over of an upgrade (``--hand-over=FD``); its import path added."""
    doc = handover.read(arg, (KIND,))
    path = doc.get("path")
    if not isinstance(path, list) or not isinstance(doc.get("options"), dict):
        raise handover.HandOverError(f"{arg}: not a hand-over of state from start_server")
    sys.path.extend(p for p in path if isinstance(p, str) and p not in sys.path)
    return doc


def resume(
    doc: dict[str, Any], config: Config, check_only: bool
) -> Optional[tuple[Supervisor, list[Any]]]:
    """The core and the sockets ``doc`` names, adopted, for the loop to run on
    (``check_only``: read it all, adopt nothing, print the version: None)."""
    from .core import Supervisor

    sup = Supervisor.from_dict(doc["core"], config.policy)
    bound = adopt_bound(doc, config, check_only)
    if check_only:
        print(__version__)
        return None
    return sup, bound


def adopt_bound(doc: Mapping[str, Any], config: Config, check_only: bool) -> list[Any]:
    import socket

    from .sockets import Bound

    specs: dict[str, Union[PortSpec, PathSpec]] = {s.key: s for s in config.ports}
    specs.update((s.key, s) for s in config.paths)
    out = []
    for b in doc["bound"]:
        spec = specs.get(b["key"])
        if spec is None:
            raise handover.HandOverError(
                f"the hand-over names a socket not in the options: {b['key']}"
            )
        if check_only:
            continue
        sock = socket.socket(fileno=b["fd"])
        os.set_inheritable(b["fd"], False)
        ident = tuple(b["ident"]) if b["ident"] is not None else None
        out.append(Bound(spec, sock, ident, b["name"], b["adopted"]))
    return out


def upgraded_line(doc: Mapping[str, Any]) -> str:
    return f"upgraded start_server {doc.get('version', '?')} -> {__version__} (pid {os.getpid()})"


def now_wall() -> float:
    return time.time()
