"""The pid file and the status files, and their parsers.

The pid file is locked before it is truncated (the original truncates first,
so a second starter wipes the first one's pid before failing), and the lock is
held for the starter's whole life: ``--stop`` waits on it. Status files are
written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional, Union


class FileError(Exception):
    """A pid or status file problem; the message names the option and path."""


class PidFile:
    """``--pid-file``: created or reused, locked, then written; unlinked at exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: Optional[int] = None
        self._ident: Optional[tuple[int, int]] = None
        self._created = False

    def acquire(self, pid: Optional[int] = None) -> None:
        """Lock the file, then at once make it name ``pid`` (None: nothing yet).

        From the moment we hold the lock, a reader (``--stop``) must never find
        the previous starter's pid there: that process may be anybody by now.
        """
        try:
            try:
                fd = open_own(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
                self._created = True
            except FileExistsError:
                fd = open_own(self.path, os.O_RDWR)
        except OSError as exc:
            raise FileError(f"--pid-file={self.path}: {cannot_open(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = read_pid_fd(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f" (pid {holder})" if holder else ""
                raise FileError(
                    f"--pid-file={self.path}: locked by a running start_server{who}"
                ) from None
            raise FileError(f"--pid-file={self.path}: cannot lock: {exc.strerror}") from None
        st = os.fstat(fd)
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            now = None
        if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            # We locked a file an exiting starter just unlinked: start over.
            os.close(fd)
            self._created = False
            self.acquire(pid)
            return
        self.fd, self._ident = fd, (st.st_dev, st.st_ino)
        self.write(pid)

    def write(self, pid: Optional[int]) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        if pid is not None:
            os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def handed_over(self) -> Optional[dict[str, Any]]:
        """What an upgrade hands over (upgrade.py): the locked fd stays open."""
        if self.fd is None:
            return None
        return {"fd": self.fd, "ident": self._ident, "created": self._created}

    @classmethod
    def adopt(cls, path: str, d: dict[str, Any]) -> PidFile:
        p = cls(path)
        p.fd, p._created = int(d["fd"]), bool(d["created"])
        p._ident = (d["ident"][0], d["ident"][1]) if d["ident"] is not None else None
        os.set_inheritable(p.fd, False)
        return p

    def release(self) -> None:
        """Unlink (only if the path is still our file), then drop the lock."""
        if self.fd is None:
            return
        unlink_if_same(self.path, self._ident)
        os.close(self.fd)
        self.fd = None

    def abandon(self) -> None:
        """Set-up failed after acquire: remove what we made, leave the rest."""
        if self.fd is None:
            return
        if self._created:
            unlink_if_same(self.path, self._ident)
        os.close(self.fd)
        self.fd = None


def unlink_if_same(path: str, ident: Optional[tuple[int, int]]) -> None:
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if ident is None or (st.st_dev, st.st_ino) == ident:
            os.unlink(path)


# The kernel's highest pid (PID_MAX_LIMIT); a larger number in a pid file is no pid.
PID_MAX = 2**22
_PID_LINE = re.compile(rb"[ \t]*([0-9]{1,7})[ \t\r]*")


def read_regular(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``; OSError for anything else.

    Opened without blocking (a FIFO never hangs us) and read only so far (a
    symlink to /dev/zero never fills the memory): every file a starter or a
    client reads is somebody else's input.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_pid_fd(fd: int) -> Optional[int]:
    try:
        data = os.pread(fd, 64, 0)
    except OSError:
        return None
    return parse_pid(data)


def parse_pid(data: Union[bytes, str]) -> Optional[int]:
    """The pid on the first line: ASCII digits, 1 to ``PID_MAX``; else None."""
    raw = data.encode(errors="replace") if isinstance(data, str) else data
    m = _PID_LINE.fullmatch(raw.split(b"\n", 1)[0])
    if m is None:
        return None
    pid = int(m.group(1))
    return pid if 0 < pid <= PID_MAX else None


def read_pid(path: str) -> int:
    """The starter's pid from ``--pid-file``, for ``--restart`` and ``--stop``."""
    try:
        data = read_regular(path, 64)
    except OSError as exc:
        raise FileError(f"--pid-file={path}: cannot read: {exc.strerror}") from None
    pid = parse_pid(data)
    if pid is None:
        raise FileError(f"--pid-file={path}: no pid in it ({shown(data)})")
    return pid


def shown(data: bytes, size: int = 30) -> str:
    """A file's start, safe to print on one line."""
    text = data.decode(errors="replace").strip()[:size]
    return repr(text) if text else "empty"


_STATUS_LINE = re.compile(r"^([0-9]{1,18}):([0-9]{1,18})$")
STATUS_LIMIT = 1 << 20  # a status file or its JSON larger than this is not ours


def format_status(entries: list[tuple[int, int]]) -> str:
    """``GEN:PID`` lines sorted by generation (then pid), each newline-terminated."""
    return "".join(f"{gen}:{pid}\n" for gen, pid in sorted(entries))


def parse_status(text: str) -> list[tuple[int, int]]:
    """The ``(generation, pid)`` pairs of a status file; other lines are ignored."""
    out = []
    for line in text.splitlines():
        m = _STATUS_LINE.match(line.strip())
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def json_path(status_file: str) -> str:
    """Where the richer status lives, beside the original's ``GEN:PID`` file."""
    return status_file + ".json"


class HardLinked(OSError):
    """A regular file with more links than one: maybe a link to a file not ours."""


def open_own(path: str, flags: int) -> int:
    """Open a file we write (pid file, log file) only if it is what it seems.

    Never through a symlink at ``path`` (``O_NOFOLLOW``), nor a regular file
    with other hard links: whoever can write to the directory could have
    linked a file of root's there, for the root starter to overwrite.
    """
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        os.close(fd)
        raise HardLinked(errno.EMLINK, f"has {st.st_nlink} hard links", path)
    return fd


def cannot_open(exc: OSError) -> str:
    """Why a file we write could not be opened: a symlink (ELOOP from O_NOFOLLOW)
    or a hard link by name."""
    if isinstance(exc, HardLinked):
        return f"{exc.strerror}; refusing to write to it"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link; refusing to follow it"
    return f"cannot open: {exc.strerror}"


def create_new(path: str) -> int:
    """A new file at ``path``, mode 0644, never through a symlink or over anything there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    os.fchmod(fd, 0o644)  # readable by clients whatever the umask
    return fd


def write_atomic(path: str, data: str) -> None:
    """Replace ``path`` by a file holding ``data``: a temporary file, then rename.

    The temporary name is random and created exclusively, so nobody who can
    write to the directory can plant a symlink there for us to write through;
    rename replaces whatever is at ``path`` (a symlink included) without
    following it.
    """
    for _ in range(8):
        tmp = f"{path}.{os.urandom(6).hex()}.tmp"
        try:
            fd = create_new(tmp)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", path)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def writable_by_others(directory: str) -> Optional[str]:
    """Who else may write to ``directory`` (None: only root, or sticky and root-owned)."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if st.st_mode & stat.S_ISVTX and st.st_uid == 0:
        return None  # like /tmp: others may add files, not replace ours
    if st.st_uid not in (0, os.geteuid()):
        return f"its owner (uid {st.st_uid})"
    if st.st_mode & stat.S_IWOTH:
        return "every user"
    if st.st_mode & stat.S_IWGRP and st.st_gid != 0:
        return f"group {st.st_gid}"
    return None


def directory_warnings(files: list[tuple[str, str]], envdir: Optional[str] = None) -> list[str]:
    """For a root starter: one warning per directory of ``(option, path)`` files that
    another user can write to, since whoever can write there can replace the files;
    and one for an ``envdir`` another user can write to."""
    if os.geteuid() != 0:
        return []
    out = []
    who = None if envdir is None else writable_by_others(envdir)
    if who is not None:
        out.append(
            f"warning: --envdir={envdir} is writable by {who}, who can put any variable "
            "(LD_PRELOAD ...) into the workers' environment, or link a file only root may "
            "read there for the root starter to pass on: make it writable by root alone"
        )
    by_dir: dict[str, list[str]] = {}
    for option, path in files:
        by_dir.setdefault(os.path.dirname(os.path.abspath(path)), []).append(option)
    for directory, options in by_dir.items():
        who = writable_by_others(directory)
        if who is not None:
            out.append(
                f"warning: the directory {directory} of {' and '.join(options)} is writable "
                f"by {who}, who can replace the files the root starter keeps there (a pid "
                "file naming another process makes --stop signal it): use a directory only "
                "root can write, such as /run/start_server/"
            )
    return out


def _finite(text: str) -> Optional[float]:
    value = float(text)
    return value if math.isfinite(value) else None


def read_json(path: str) -> Optional[dict[str, Any]]:
    """The JSON object in ``path``; None if missing or no such thing (the caller
    still checks every value it uses). A number JSON cannot hold (NaN, Infinity,
    1e400) reads as null, so that what is read can be written as JSON again."""
    try:
        value = json.loads(
            read_regular(path, STATUS_LIMIT), parse_float=_finite, parse_constant=lambda _: None
        )
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class StatusFile:
    """``--status-file`` plus its JSON sidecar; both removed at exit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.json_path = json_path(path)
        self._written = False

    @property
    def written(self) -> bool:
        return self._written

    @classmethod
    def adopt(cls, path: str, written: bool) -> StatusFile:
        s = cls(path)
        s._written = written
        return s

    def write(self, entries: list[tuple[int, int]], detail: dict[str, Any]) -> None:
        write_atomic(self.path, format_status(entries))
        # Compact: an indent would take the pure-Python encoder (ms per write).
        text = json.dumps(detail, separators=(",", ":"), sort_keys=True)
        write_atomic(self.json_path, text + "\n")
        self._written = True

    def remove(self) -> None:
        if not self._written:
            return
        for path in (self.path, self.json_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
