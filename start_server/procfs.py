"""What /proc says: parents and children, memory (PSS), open fds and limits of process trees."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from .events import Fds, Measured

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional, Union


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
