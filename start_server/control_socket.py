"""The control socket: requests with an argument from the clients (``--scale N``,
``--restart --worker I``), read by the starter's loop.

A datagram socket named ``control`` in the starter's private directory (the
notify sockets' directory, notify_sockets.py: a fresh name, mode 0700, 0711
with ``--user``), the socket file the starter's own with mode 0600: no other
user can even connect, the workers' user included. Every datagram's sender is
checked again by the kernel's credentials (``SCM_CREDENTIALS``): only root
and the starter's own user count, the very users who may signal the starter,
so the channel grants nothing a signal does not. Anything else is dropped with
a line. The status JSON names the socket (``control_socket``); the client
checks that it is a socket of root or of the starter's user before it sends.

One request per datagram, ASCII: ``start_server/1 <id> <kind> <value>``; the
answer is in the status JSON (``requests``), where the client waits for it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

from .events import Asked
from .log import log

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    import selectors
    from typing import Optional

    from .notify_sockets import NotifySockets

MAGIC = "start_server/1"
KINDS = ("scale", "worker")
MAX_REQUEST = 200  # bytes of one datagram
BATCH = 16  # datagrams read per wake-up
_UCRED = struct.Struct("iII")  # pid, uid, gid
KEY = "control"  # the selector key's data


def request(id: str, kind: str, value: str) -> bytes:
    """One request as the client sends it."""
    return f"{MAGIC} {id} {kind} {value}".encode("ascii")


def parse(data: bytes) -> Optional[tuple[str, str, str]]:
    """(id, kind, value) of a well-formed request, else None."""
    try:
        words = data.decode("ascii").split(" ")
    except UnicodeDecodeError:
        return None
    if len(words) != 4 or words[0] != MAGIC or words[2] not in KINDS:
        return None
    id, kind, value = words[1:]
    if not (id.isalnum() and 0 < len(id) <= 32 and value.isprintable() and 0 < len(value) <= 32):
        return None
    return id, kind, value


class ControlSocket:
    """The socket, registered in the loop's selector with the data ``KEY``."""

    def __init__(self, sel: selectors.BaseSelector, notify: NotifySockets) -> None:
        self.sel = sel
        self.notify = notify  # whose private directory it lives in
        self.sock: Optional[socket.socket] = None
        self.address: Optional[str] = None  # a path, or ``@name`` (abstract)
        self.path: Optional[str] = None

    def open(self) -> None:
        """Bind it (once the starter's pid and directory are final); a failure is a line."""
        import selectors

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            directory = self.notify.directory()
            if directory is None:
                name = f"start_server/{os.getpid()}/control/{os.urandom(8).hex()}"
                sock.bind("\0" + name)
                self.address = "@" + name
            else:
                path = os.path.join(directory, "control")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # ours (the directory is the starter's alone): a last one's
                sock.bind(path)
                os.chmod(path, 0o600)
                self.address = self.path = path
        except OSError as exc:
            sock.close()
            log(f"cannot open the control socket: {exc.strerror or exc}; "
                "--scale and --restart --worker will not be answered")
            return
        self.sock = sock
        self.sel.register(sock, selectors.EVENT_READ, KEY)

    def read(self) -> list[Asked]:
        """The requests that came (a bounded batch), each from root or our own user."""
        out: list[Asked] = []
        if self.sock is None:
            return out
        for _ in range(BATCH):
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(
                    MAX_REQUEST + 1, socket.CMSG_SPACE(_UCRED.size)
                )
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log(f"cannot read the control socket: {exc.strerror or exc}")
                break
            pid, uid = _sender(ancillary)
            if uid not in (0, os.geteuid()):
                log(f"control socket: request from pid {pid} (uid {uid}) dropped: "
                    "only root and the starter's own user may ask")
                continue
            req = parse(data) if len(data) <= MAX_REQUEST else None
            if req is None:
                log(f"control socket: malformed request from pid {pid} dropped")
                continue
            out.append(Asked(*req))
        return out

    def close(self) -> None:
        if self.sock is None:
            return
        self.sel.unregister(self.sock)
        self.sock.close()
        self.sock = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _sender(ancillary: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    """The sender's pid and uid from the kernel's credentials ((0, -1) without them)."""
    for level, kind, payload in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS) and len(
            payload
        ) >= _UCRED.size:
            pid, uid, _gid = _UCRED.unpack(payload[: _UCRED.size])
            return pid, uid
    return 0, -1
