"""The generations' notify sockets: where sd_notify datagrams arrive, and who may send them.

Each generation gets its own datagram socket, a file in a private directory
the starter made (mode 0700; 0711 with ``--user``, the socket itself then
owned by that user with mode 0600), so that no other user can even connect.
That keeps strangers out; it does not keep out a process of the same user
that is no part of the generation. So a datagram counts only when the
kernel's credentials of its sender (``SCM_CREDENTIALS``: the pid at the time
it was sent) name a process that is, when the datagram is read, alive and in
the generation's process tree. A sender that has already exited cannot be
placed and is dropped: accepting it would let anyone fake readiness by
sending and exiting at once. Where the kernel passes the sender's pidfd with
the datagram (``SO_PASSPIDFD``, Linux 6.5), that tells whether the very
sender is still alive, so a pid reused since the datagram was sent cannot
stand in for it. ``systemd-notify`` stays alive until its
message has been read (it waits on a barrier), so it is placed.

A flood costs little: at most ``BATCH`` datagrams are read per wake-up and
``BUDGET`` per second from one socket; over budget the socket is left unread
until the second is over (its senders block or fail, nothing is lost that a
generation sent). Dropped datagrams are counted and logged at most once per
second per generation.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct

from . import procfs
from .events import Notified
from .files import writable_by_others
from .log import log

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from collections.abc import Collection
    from typing import Any, Optional

    from .generations import Generation

BATCH = 32  # datagrams read from one socket per wake-up
BUDGET = 256  # datagrams read from one socket per second
WINDOW = 1.0  # seconds: the budget's period, and the least time between two drop summaries
_UCRED = struct.Struct("iII")  # pid, uid, gid
_CREDS_SPACE = socket.CMSG_SPACE(_UCRED.size)
_PIDFD_SPACE = socket.CMSG_SPACE(4)
SCM_PIDFD = 4  # the same on every architecture
# SO_PASSPIDFD is 76 where the socket options are the generic ones (not on
# alpha, mips, parisc, sparc); Python names it from 3.14 on.
SO_PASSPIDFD: Optional[int] = getattr(socket, "SO_PASSPIDFD", None)
if SO_PASSPIDFD is None and os.uname().machine in (
    "x86_64", "i686", "i386", "aarch64", "armv7l", "armv6l", "riscv64", "ppc64le",
    "ppc64", "s390x", "loongarch64",
):
    SO_PASSPIDFD = 76
_MAX_SUN_PATH = 100  # of sun_path's 108 bytes, with room for "/<number>"


def belongs(pid: int, root: int) -> Optional[bool]:
    """Is ``pid`` the generation's main process or in its tree? None if it is gone.

    In its tree: a descendant of ``root``, or in ``root``'s process group (a
    child that daemonized has the starter for parent, but keeps the group).
    """
    found, gone = owner(pid, {root})
    return None if gone else found is not None


def owner(pid: int, roots: Collection[int]) -> tuple[Optional[int], bool]:
    """The root whose tree ``pid`` is in, and whether ``pid`` is gone.

    One walk up ``pid``'s ancestry, each step a set look-up: the cost does not
    grow with the number of roots. ``pid`` itself first, then its process group
    (a worker leads its own), then its nearest ancestor that is a root.
    """
    if pid <= 0:
        return None, False  # pid 0: a sender in a PID namespace we cannot see into
    if pid in roots:
        return pid, False
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return None, True
    if pgid in roots:
        return pgid, False
    seen = 0
    cur: Optional[int] = pid
    while cur and cur > 1 and seen < 64:
        cur = procfs.parent_of(cur)
        if cur is not None and cur in roots:
            return cur, False
        seen += 1
    return None, False


def parse_notify(data: bytes) -> dict[str, str]:
    fields = {}
    for line in data.decode(errors="replace").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def sender(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int, Optional[bool]]:
    """The sender's pid and uid from the kernel's credentials ((0, -1) without them),
    and whether it is alive now by its pidfd (None without one).

    A pid may have been reused since the datagram was sent; a pidfd names the
    very process. Every fd that came with the datagram is closed here (the
    pidfd, and whatever a sender passed, such as systemd-notify's barrier).
    """
    pid, uid, alive = 0, -1, None
    for level, kind, payload in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            pid, uid, _gid = _UCRED.unpack(payload[: _UCRED.size])
        elif kind in (SCM_PIDFD, socket.SCM_RIGHTS):
            for fd in struct.unpack(f"{len(payload) // 4}i", payload[: len(payload) // 4 * 4]):
                if kind == SCM_PIDFD:
                    alive = _alive(fd)
                os.close(fd)
    return pid, uid, alive


def _alive(pidfd: int) -> Optional[bool]:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, only not ours to signal
    except OSError:
        return None
    return True


def _pass_pidfd(sock: socket.socket) -> bool:
    """Ask for the sender's pidfd with each datagram (Linux >= 6.5); False where not had."""
    if SO_PASSPIDFD is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSPIDFD, 1)
    except OSError:
        return False
    return True


class _Channel:
    """One generation's socket, its read budget and its uncounted drops."""

    def __init__(self, sock: socket.socket, path: Optional[str]) -> None:
        self.sock = sock
        self.path = path  # None: an abstract socket (no private directory could be made)
        self.space = _CREDS_SPACE + (_PIDFD_SPACE if _pass_pidfd(sock) else 0)
        self.window_start = 0.0
        self.reads = 0
        self.paused = False
        self.dropped = 0  # since the last summary
        self.last_drop = ""  # who sent the last dropped datagram, and why
        self.summarised_at: Optional[float] = None


class NotifySockets:
    """The notify sockets of every live generation, registered in the loop's selector.

    The selector key's data is the generation number.
    """

    def __init__(self, sel: selectors.BaseSelector, owner: Optional[tuple[int, int]] = None):
        self.sel = sel
        self.owner = owner  # (uid, gid) of the workers when not the starter's own
        self.dir: Optional[str] = None
        self._no_dir = False  # making the directory failed once: abstract sockets from then on
        self.channels: dict[int, _Channel] = {}

    # ---- sockets ------------------------------------------------------------

    def address(self, number: int) -> str:
        """The generation's NOTIFY_SOCKET value: a path, or ``@name`` if no directory."""
        ch = self.channels.get(number)
        if ch is None:
            ch = self._open(number)
            self.channels[number] = ch
            self.sel.register(ch.sock, selectors.EVENT_READ, number)
        if ch.path is not None:
            return ch.path
        name = ch.sock.getsockname()
        text = name.decode() if isinstance(name, bytes) else str(name)
        return "@" + text.lstrip("\0")

    def _open(self, number: int) -> _Channel:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            directory = self._directory()
            if directory is None:
                name = f"start_server/{os.getpid()}/{number}/{os.urandom(8).hex()}"
                sock.bind("\0" + name)
                return _Channel(sock, None)
            path = os.path.join(directory, str(number))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # ours: the directory is the starter's alone
            try:
                sock.bind(path)
            except FileNotFoundError:  # the directory is gone (a /tmp cleaner): a new one
                self.dir = None
                directory = self._directory()
                if directory is None:
                    raise
                path = os.path.join(directory, str(number))
                sock.bind(path)
            os.chmod(path, 0o600)
            if self.owner is not None:
                os.chown(path, *self.owner, follow_symlinks=False)
            return _Channel(sock, path)
        except BaseException:
            sock.close()
            raise

    def directory(self) -> Optional[str]:
        """The private directory (made now if need be), where the control socket
        lives too (control_socket.py); None where none can be made."""
        return self._directory()

    def _directory(self) -> Optional[str]:
        """The private directory, made on first use; None where none can be made."""
        if self.dir is not None or self._no_dir:
            return self.dir
        base = os.environ.get("TMPDIR") or "/tmp"
        if (
            not os.path.isabs(base)
            or len(base) > _MAX_SUN_PATH - 40
            or writable_by_others(base) is not None  # someone could swap our directory
        ):
            base = "/tmp"
        path = os.path.join(base, f"start_server.{os.getpid()}.{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)  # a fresh name: never a directory someone planted
            try:
                # The workers' user may pass through to its socket, but not list or write.
                os.chmod(path, 0o711 if self.owner is not None else 0o700)
            except OSError:
                os.rmdir(path)
                raise
        except OSError as exc:
            log(
                f"cannot make a private directory for the notify sockets in {base}: "
                f"{exc.strerror}; using abstract sockets (senders are still checked)"
            )
            self._no_dir = True
            return None
        self.dir = path
        return path

    def handed_over(self) -> dict[str, Any]:
        """What an upgrade hands over (upgrade.py): the directory, each socket's fd."""
        channels = [[n, ch.sock.fileno(), ch.path] for n, ch in self.channels.items()]
        return {"dir": self.dir, "no_dir": self._no_dir, "channels": channels}

    def adopt(self, d: dict[str, Any]) -> None:
        """Take over the sockets ``handed_over`` named, in the new process."""
        self.dir, self._no_dir = d["dir"], bool(d.get("no_dir", False))
        for number, fd, path in d["channels"]:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            self.channels[number] = _Channel(sock, path)
            self.sel.register(sock, selectors.EVENT_READ, number)

    def prune(self, live: Collection[int]) -> None:
        """Close the sockets of generations that are gone."""
        for number in [n for n in self.channels if n not in live]:
            self._summarise(number, self.channels[number])
            self._close(self.channels.pop(number))

    def _close(self, ch: _Channel) -> None:
        if not ch.paused:
            self.sel.unregister(ch.sock)
        ch.sock.close()
        if ch.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(ch.path)

    def close(self) -> None:
        self.prune(())
        if self.dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.dir)
            self.dir = None

    # ---- datagrams ----------------------------------------------------------

    def read(
        self, number: int, gen: Optional[Generation], now: float, forked: Collection[int] = ()
    ) -> list[Notified]:
        """What the generation's processes said since the last read (a bounded batch).

        ``forked``: the generation's workers forked but not yet known to the
        core (their ``Spawned`` is queued): a datagram from their trees is
        theirs too, and reaches the core after their ``Spawned``.
        """
        ch = self.channels.get(number)
        if ch is None:
            return []
        if now - ch.window_start >= WINDOW:
            ch.window_start, ch.reads = now, 0
        out: list[Notified] = []
        placed: dict[int, tuple[Optional[int], str]] = {}  # sender pid -> (worker, why not)
        roots: Optional[set[int]] = None  # the workers' pids, made at the first datagram
        for _ in range(BATCH):
            if ch.reads >= BUDGET:
                self.sel.unregister(ch.sock)  # until the window is over: see run_due
                ch.paused = True
                break
            try:
                data, anc, _flags, _addr = ch.sock.recvmsg(4096, ch.space)
            except (BlockingIOError, InterruptedError):
                break
            ch.reads += 1
            pid, uid, alive = sender(anc)
            if alive is False:
                worker, why = None, "already exited"
            else:
                if pid not in placed:
                    if roots is None:
                        roots = set(forked) | ({w.pid for w in gen.workers} if gen else set())
                    placed[pid] = _place(pid, gen, roots)
                worker, why = placed[pid]
            if worker is None:
                ch.dropped += 1
                ch.last_drop = f"pid {pid}, uid {uid}: {why}"
                continue
            out.append(Notified(number, parse_notify(data), worker))
        if ch.dropped and (ch.summarised_at is None or now - ch.summarised_at >= WINDOW):
            self._summarise(number, ch, now)
        return out

    def _summarise(self, number: int, ch: _Channel, now: Optional[float] = None) -> None:
        if not ch.dropped:
            return
        what = "a notification" if ch.dropped == 1 else f"{ch.dropped} notifications"
        log(
            f"ignored {what} to generation {number} from outside it (last: {ch.last_drop})"
        )
        ch.dropped = 0
        if now is not None:
            ch.summarised_at = now

    def next_deadline(self) -> Optional[float]:
        """When a paused socket may be read again, or held-back drops are due in the log."""
        due = [
            ch.window_start + WINDOW for ch in self.channels.values() if ch.paused
        ] + [
            ch.summarised_at + WINDOW
            for ch in self.channels.values()
            if ch.dropped and ch.summarised_at is not None
        ]
        return min(due) if due else None

    def run_due(self, now: float) -> None:
        for number, ch in self.channels.items():
            if ch.paused and now >= ch.window_start + WINDOW:
                ch.paused = False
                ch.window_start, ch.reads = now, 0
                self.sel.register(ch.sock, selectors.EVENT_READ, number)
            if ch.dropped and ch.summarised_at is not None and now >= ch.summarised_at + WINDOW:
                self._summarise(number, ch, now)


def _place(
    pid: int, gen: Optional[Generation], roots: Collection[int]
) -> tuple[Optional[int], str]:
    """The worker (one of ``roots``) whose tree ``pid`` is in (checked now), or None and why not."""
    if gen is None:
        return None, "the generation is gone"
    if pid <= 0:
        return None, "no credentials"
    if not roots:
        return None, "not in its process tree"
    found, gone = owner(pid, roots)
    if found is not None:
        return found, ""
    return None, "already exited" if gone else "not in its process tree"
