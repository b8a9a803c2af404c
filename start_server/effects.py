"""What touches the OS on the core's behalf: spawn, reap, signal, log, publish.

Children are made with fork + exec rather than ``subprocess``: a ``Popen``
object would reap behind our back (its ``__del__`` and ``_cleanup`` call
waitpid), and the starter has exactly one owner of waitpid, ``reap()``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping

from . import signals
from .events import Fds, Measured, Publish, WorkerView
from .files import read_regular
from .generations import State
from .identity import Identity, become
from .spec import signal_name

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

class SpawnError(Exception):
    """The command could not be executed (reported by the child before exec)."""


def _utc_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def format_line(message: str, number: Optional[int] = None, pid: Optional[int] = None) -> str:
    """``<UTC time> start_server[<pid>] [gen=N pid=P] message``: greppable, one line."""
    who = ""
    if number is not None:
        who = f"gen={number} " + (f"pid={pid} " if pid else "")
    return f"{_utc_now()} start_server[{os.getpid()}] {who}{message}\n"


# A log target opened but not yet on fd 2: the lines before the switch go there too.
_tee: list[int] = []


def tee(fd: Optional[int]) -> None:
    """Copy every line also to ``fd`` (None: stop), until the log target is fd 2 itself.

    So the first lines ("starting now", "listening on") reach both the
    terminal and the --log-file, which would otherwise start mid-story.
    """
    _tee[:] = [] if fd is None else [fd]


def log(message: str, number: Optional[int] = None, pid: Optional[int] = None) -> None:
    """One write(2) per line to fd 2, so lines never interleave with a child's."""
    line = format_line(message, number, pid).encode(errors="replace")
    for fd in (2, *_tee):
        with contextlib.suppress(OSError):
            os.write(fd, line)


def log_exception(message: str) -> None:
    """Log ``message`` and the exception being handled, with its traceback,
    one line each (so the log target gets it, whatever stderr has become)."""
    try:
        import traceback  # only when something went wrong: not kept resident otherwise

        lines = traceback.format_exc().splitlines()
    except Exception as exc:  # pragma: no cover - no memory, no fd to import with
        lines = [f"(no traceback: {exc!r})"]
    log(message)
    for line in lines:
        log("  " + line)


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


def spawn(
    command: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Optional[str],
    pass_fds: Iterable[int],
    *,
    listen_fds: bool = False,
    user: Optional[Identity] = None,
) -> int:
    """fork + exec the command in its own process group; return its pid.

    Exec failure comes back through a close-on-exec pipe as a SpawnError, so
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
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child, until exec
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
    os.close(write_end)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # also from the parent: no window where a kill misses
    chunks = []
    while True:
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    if chunks:
        os.waitpid(pid, 0)
        raise SpawnError(b"".join(chunks).decode(errors="replace"))
    return pid


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


ENVDIR_LIMIT = 1 << 18  # 256 KiB: the longest first line an envdir file may hold


def read_envdir(path: Optional[str]) -> dict[str, Optional[str]]:
    """daemontools envdir: each file's first line is a value; an empty file unsets.

    Returns name -> value, or name -> None for a variable to remove. Only
    regular files count (symlinks to them too); a FIFO, a device or a file
    whose first line is over ``ENVDIR_LIMIT`` is skipped with a log line,
    never waited on nor read to the end.
    """
    out: dict[str, Optional[str]] = {}
    if path is None:
        return out
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        log(f"cannot read envdir {path}: {exc.strerror}")
        return out
    for name in names:
        if name.startswith(".") or "=" in name:
            continue
        full = os.path.join(path, name)
        if os.path.isdir(full):
            continue
        try:
            data = read_regular(full, ENVDIR_LIMIT + 1)
        except OSError as exc:
            log(f"ignoring envdir entry {full}: {exc.strerror}")
            continue
        if not data:
            out[name] = None
            continue
        first = data.split(b"\n", 1)[0]
        if len(first) > ENVDIR_LIMIT:
            log(f"ignoring envdir entry {full}: first line over {ENVDIR_LIMIT} bytes")
            continue
        # daemontools: trailing blanks go, NULs become newlines.
        out[name] = first.rstrip(b" \t").replace(b"\0", b"\n").decode(errors="replace")
    return out


def status_detail(snapshot: Publish, starter_pid: int, now: float) -> dict[str, Any]:
    """The JSON sidecar: what ``--status`` and ``--restart`` read."""
    wall = time.time()

    def view(g: WorkerView) -> dict[str, Any]:
        return {
            "generation": g.number,
            "worker": g.slot,
            "memory": g.memory,
            "fds": g.fds,
            "restarts": g.restarts,
            "pid": g.pid,
            "state": g.state.value,
            "ready": g.ready,
            "status": g.status,
            "spawned_at": wall - (now - g.spawned_at),
            "started_at": None if g.started_at is None else wall - (now - g.started_at),
        }

    return {
        "starter_pid": starter_pid,
        "last_generation": snapshot.last_number,
        "failed_generation": snapshot.failed_number,
        "failed_reason": snapshot.failed_reason,
        "failed_at": None if snapshot.failed_at is None else wall - (now - snapshot.failed_at),
        "next_attempt_at": (
            None if snapshot.next_attempt is None else wall + (snapshot.next_attempt - now)
        ),
        "generations": [view(g) for g in snapshot.generations],
        "last_event": snapshot.last_event,
        "last_event_at": (
            None if snapshot.last_event_at is None else wall - (now - snapshot.last_event_at)
        ),
        "updated_at": wall,
    }


def status_entries(snapshot: Publish) -> list[tuple[int, int]]:
    """The original's ``GEN:PID`` lines: generations that started and are alive."""
    return [
        (g.number, g.pid)
        for g in snapshot.generations
        if g.state in (State.ACTIVE, State.RETIRING) and g.started_at is not None
    ]


def notify_socket(address: str, message: str) -> None:
    """Send one sd_notify datagram to ``address`` (``@`` = abstract namespace)."""
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.send(message.encode())
        except OSError as exc:
            log(f"cannot notify {address!r}: {exc.strerror}")


def parent_of(pid: Union[int, str]) -> Optional[int]:
    """The parent pid of ``pid`` (a pid, or a /proc entry name), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _proc_parents() -> dict[int, int]:
    """pid -> parent pid of every process, from /proc (one pass)."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := parent_of(entry)) is not None:
            out[int(entry)] = ppid
    return out


def _status_field(entry: Union[int, str], key: str) -> Optional[list[str]]:
    """The values of ``key`` (``"NSpid:"``, ``"VmRSS:"``) in /proc/<entry>/status.

    None when the line is absent; OSError when the process is gone.
    """
    with open(f"/proc/{entry}/status") as fh:
        for line in fh:
            if line.startswith(key):
                return line.split()[1:]
    return None


def children_of(parent: int) -> list[int]:
    """The live children of ``parent`` (for the starter: workers and adopted leftovers)."""
    if not os.path.isdir("/proc"):
        return []
    return sorted(pid for pid, ppid in _proc_parents().items() if ppid == parent)


def _ns_pids(entry: str) -> list[int]:
    """``NSpid`` of /proc/<entry>: its pid in /proc's namespace, then in each nested one."""
    values = _status_field(entry, "NSpid:")
    if values is None:
        raise OSError(f"no NSpid in /proc/{entry}/status")
    return [int(x) for x in values]


def own_children() -> list[int]:
    """Our children, as pids of our own PID namespace (the ones kill(2) and waitpid see).

    /proc may belong to another PID namespace than ours: PID 1 of
    ``unshare --pid --fork`` without ``--mount-proc`` sees the host's, where
    its children have other numbers, and its own pid 1 is the host's init.
    So the kernel's list of our children is read through /proc/self and each
    pid translated by NSpid. Without that list (no CONFIG_PROC_CHILDREN, or
    a kernel without NSpid): the parent field of every /proc entry.
    """
    try:
        level = len(_ns_pids("self"))  # how deep our namespace is, seen from /proc's
        lists = [
            os.path.join("/proc/self/task", tid, "children")
            for tid in os.listdir("/proc/self/task")
        ]
        raw = []
        for path in lists:
            with open(path) as fh:
                raw.extend(fh.read().split())
    except OSError:
        return children_of(os.getpid())
    out = set()
    for pid in raw:
        try:
            ids = _ns_pids(pid)
        except OSError:
            continue  # gone meanwhile
        if len(ids) >= level:
            out.add(ids[level - 1])
    return sorted(out)


def _process_memory(pid: int) -> Optional[int]:
    """PSS in bytes (shared pages counted once across a tree), else RSS."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        rss = _status_field(pid, "VmRSS:")
    except OSError:
        return None
    return int(rss[0]) * 1024 if rss else None


def _tree(root: int, kids: Mapping[int, list[int]]) -> list[int]:
    """``root`` and all its descendants."""
    out, todo, seen = [], [root], set()
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            out.append(pid)
            todo.extend(kids.get(pid, ()))
    return out


def _fd_kind(target: str) -> str:
    """What an fd is, from its /proc link: ``socket:[123]``, ``pipe:[45]``, a path ..."""
    if target.startswith("socket:"):
        return "sockets"
    if target.startswith("pipe:"):
        return "pipes"
    if target.startswith("/"):
        return "files"
    if target.startswith("anon_inode:"):
        return "anon inodes"  # epoll, eventfd, timerfd, signalfd ...
    return "others"


def _process_fds(pid: int, skip: set[str]) -> dict[str, int]:
    """The fds of ``pid`` by kind, but 0-2 and those linking to ``skip``.

    OSError when the process is gone or its fds are not ours to read: a
    process that made itself non-dumpable lets us list its fds but not read
    their links, unless we may ptrace it.
    """
    base = f"/proc/{pid}/fd"
    kinds: dict[str, int] = {}
    for name in os.listdir(base):
        if int(name) <= 2:
            continue
        try:
            target = os.readlink(f"{base}/{name}")
        except FileNotFoundError:
            continue  # closed meanwhile
        if target not in skip:
            kind = _fd_kind(target)
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _nofile(pid: int) -> Optional[int]:
    """The soft RLIMIT_NOFILE of ``pid``, from /proc/<pid>/limits; None: unknown."""
    try:
        with open(f"/proc/{pid}/limits") as fh:
            for line in fh:
                if line.startswith("Max open files"):
                    soft = line[len("Max open files") :].split()[0]
                    return int(soft) if soft.isdigit() else None
    except OSError:
        pass
    return None


def _tree_fds(pids: list[int], skip: set[str]) -> Fds:
    kinds: dict[str, int] = {}
    unreadable = []
    for pid in pids:
        try:
            mine = _process_fds(pid, skip)
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone meanwhile
        except OSError as exc:
            unreadable.append((pid, exc.strerror or str(exc)))
            continue
        for kind, n in mine.items():
            kinds[kind] = kinds.get(kind, 0) + n
    ordered = tuple(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return Fds(sum(kinds.values()), ordered, _nofile(pids[0]), tuple(unreadable))


def measure(roots: Iterable[int], fds: bool = False, listeners: Iterable[int] = ()) -> Measured:
    """One health check: each root's whole process tree, in one pass over /proc.

    Memory always; with ``fds``, its open fds too, where the sockets of
    ``listeners`` (the starter's, inherited by every worker) are not counted.
    """
    skip = {f"socket:[{os.fstat(fd).st_ino}]" for fd in listeners} if fds else set()
    parents = _proc_parents()
    kids: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        kids.setdefault(ppid, []).append(pid)
    usage: dict[int, int] = {}
    counts: dict[int, Fds] = {}
    for root in roots:
        if root not in parents:
            continue
        tree = _tree(root, kids)
        usage[root] = sum(_process_memory(pid) or 0 for pid in tree)
        if fds:
            counts[root] = _tree_fds(tree, skip)
    return Measured(usage, counts)


def become_subreaper() -> bool:
    """Linux: orphans of our children are re-parented to us, so we reap and stop them."""
    import ctypes

    pr_set_child_subreaper = 36
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # libc is loaded already
        return int(libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
