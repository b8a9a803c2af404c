"""Client commands: ``--restart``, ``--stop``, ``--upgrade``, ``--status``.

Each signals the running starter, then waits on something that changes (the
status file's directory through inotify, the starter's pidfd, the pid-file
lock) with a deadline, and exits with a truthful code and one line of reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import stat
import sys
import threading
import time

from .files import (
    PID_MAX,
    STATUS_LIMIT,
    FileError,
    json_path,
    parse_pid,
    parse_status,
    read_json,
    read_regular,
    shown,
)
from .values import CLIENT_TIMEOUT, ConfigError, option_value, seconds_value

TYPE_CHECKING = False  # typing costs the client milliseconds at every deploy
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Callable, Optional

_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_DELETE = 0x200


class ControlError(Exception):
    """The client command failed; the message is its one line."""


class ClientOptions:
    """What a client command needs: the running starter's files and a deadline."""

    __slots__ = ("pid_file", "request", "status_file", "timeout")

    def __init__(self, pid_file: Optional[str], status_file: Optional[str], timeout: float,
                 request: Optional[tuple[str, str]] = None) -> None:
        self.pid_file = pid_file
        self.status_file = status_file
        self.timeout = timeout
        self.request = request  # ("scale", N|+K|-K) or ("worker", I): asking.py


def client_options(options: Mapping[str, Any], mode: str,
                   request: Optional[tuple[str, str]] = None) -> ClientOptions:
    """``--restart``, ``--stop``, ``--status`` or ``--scale`` (``mode``; ``request``
    for ``--scale`` and ``--worker``, its value checked by ``asking.check_request``):
    check only what it needs.

    The starter's other options may be given too (a deploy script may reuse
    the whole command line); they are not looked at.
    """
    pid_file = option_value(options, "pid_file")
    status_file = option_value(options, "status_file")
    timeout = seconds_value(
        "--timeout", option_value(options, "timeout"), CLIENT_TIMEOUT, allow_zero=False
    )
    if mode == "stop":
        if not pid_file:
            raise ConfigError.of("--stop", None, "requires --pid-file")
    elif not (pid_file and status_file):
        raise ConfigError.of(f"--{mode}", None, "requires --pid-file and --status-file")
    return ClientOptions(pid_file, status_file, timeout, request)


class _DirWatch:
    """inotify on a directory, through libc; ``fd`` is None where unavailable."""

    def __init__(self, directory: str) -> None:
        self.fd: Optional[int] = None
        try:
            # The symbols already loaded (libc among them): no find_library, which
            # imports much and runs ldconfig.
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self._libc, self._dir = libc, os.fsencode(directory)
        self.fd = fd
        if not self.rewatch():
            os.close(fd)
            self.fd = None

    def rewatch(self) -> bool:
        """Watch the directory (again: one removed and made anew is another
        directory, which the old watch does not see); False where it is not there."""
        if self.fd is None:
            return False
        # A status file is replaced by rename (ours and the original), written in
        # place and closed, or removed; a log file appended to in the same
        # directory (IN_MODIFY) must not wake us on every line.
        mask = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_DELETE
        return int(self._libc.inotify_add_watch(self.fd, self._dir, mask)) >= 0

    def drain(self) -> None:
        """Consume what woke us: one read (a directory busy with other files
        must not keep us reading past our deadline)."""
        if self.fd is not None:
            with contextlib.suppress(BlockingIOError):
                os.read(self.fd, 65536)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pidfd(pid: int) -> Optional[int]:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


NOT_RUNNING = "no start_server is running with this pid file"


def _open_held(pid_file: str) -> tuple[int, int]:
    """``(fd, pid)`` of the running starter's pid file, open and checked.

    Every client says the same when no starter runs with that file (missing,
    empty, a dead pid, a lock nobody holds). A starter holds the lock for its
    whole life (ours and the original), so a free lock means a stale file
    whose pid may since belong to anybody: never signal it.
    """
    try:
        # Without blocking: a FIFO there must not hang us (it is refused below).
        fd = os.open(pid_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ControlError(
            f"--pid-file={pid_file}: {NOT_RUNNING} (there is no such file)"
        ) from None
    except OSError as exc:
        raise ControlError(f"--pid-file={pid_file}: cannot open: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ControlError(f"--pid-file={pid_file}: not a regular file")
        return fd, _held_pid(pid_file, fd)
    except BaseException:
        os.close(fd)
        raise


def _held_pid(pid_file: str, fd: int) -> int:
    try:
        data = os.pread(fd, 64, 0)
    except OSError as exc:
        raise ControlError(f"--pid-file={pid_file}: cannot read: {exc.strerror}") from None
    pid = parse_pid(data)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        held = True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        held = False
    if pid is None:
        if held:  # locked, pid not written yet
            raise ControlError(f"--pid-file={pid_file}: no pid in it yet (still starting?)")
        what = f": {shown(data)}" if data.strip() else ""
        raise ControlError(f"--pid-file={pid_file}: {NOT_RUNNING} (it has no pid in it{what})")
    if not _alive(pid):
        raise ControlError(
            f"--pid-file={pid_file}: {NOT_RUNNING} (it names pid {pid}, which is not running)"
        )
    if not held:
        raise ControlError(
            f"--pid-file={pid_file}: {NOT_RUNNING} (it names pid {pid}, but nothing holds "
            "its lock: a stale file); not signalling it"
        )
    return pid


def _starter_pid(pid_file: str) -> int:
    fd, pid = _open_held(pid_file)
    os.close(fd)
    return pid


def _generations(status_file: str) -> list[tuple[int, int]]:
    try:
        return parse_status(read_regular(status_file, STATUS_LIMIT).decode(errors="replace"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ControlError(f"--status-file={status_file}: cannot read: {exc.strerror}") from None


def restart(config: ClientOptions) -> int:
    """HUP the starter; 0 once only generations newer than the old ones are listed."""
    assert config.pid_file and config.status_file
    pid = _starter_pid(config.pid_file)
    gens = _generations(config.status_file)
    if not gens:
        raise ControlError(
            f"--status-file={config.status_file}: no active generation listed "
            "(is the starter still starting?)"
        )
    wait_for = _next_generation(config.status_file, gens)
    status_file = config.status_file

    def answer() -> Optional[int]:
        now_gens = _generations(status_file)
        numbers = sorted({g for g, _ in now_gens})
        if numbers and numbers[0] >= wait_for and len(numbers) == 1:
            pids = ",".join(str(p) for _, p in now_gens)
            print(f"start_server: restarted: generation {numbers[0]} (pid {pids})",
                  file=sys.stderr)
            return 0
        detail = read_json(json_path(status_file)) or {}
        failed = detail.get("failed_generation")
        if isinstance(failed, int) and failed >= wait_for:
            raise ControlError(
                f"generation {failed} failed to start: {detail.get('failed_reason') or '?'}"
                "; the previous generation keeps serving"
            )
        return None

    def timed_out() -> str:
        listed = ", ".join(f"{g}:{p}" for g, p in _generations(status_file)) or "nothing"
        return (f"timed out after {config.timeout:g} s waiting for generation {wait_for} "
                f"to take over (status file lists {listed})")

    return await_answer(config, pid, lambda: os.kill(pid, signal.SIGHUP), answer,
                        what="the restart", timed_out=timed_out)


def await_answer(config: ClientOptions, pid: int, send: Callable[[], None],
                 answer: Callable[[], Optional[int]], *, what: str,
                 timed_out: Callable[[], str]) -> int:
    """``send()``, then the exit code ``answer()`` gives (or raises), re-asked
    whenever the status file's directory changes; ControlError once the starter
    is gone or after --timeout. Woken by inotify and the starter's pidfd."""
    assert config.status_file
    watch = _DirWatch(os.path.dirname(os.path.abspath(config.status_file)))
    pidfd = _pidfd(pid)
    deadline = time.monotonic() + config.timeout
    try:
        send()
        while True:
            code = answer()
            if code is not None:
                return code
            if not _alive(pid):
                raise ControlError(f"start_server (pid {pid}) exited before {what} completed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ControlError(timed_out())
            fds = [fd for fd in (watch.fd, pidfd) if fd is not None]
            # Without inotify, re-read every 50 ms (the starter itself never polls).
            select.select(fds, [], [], min(remaining, 0.05) if watch.fd is None else remaining)
            watch.drain()
    finally:
        watch.close()
        if pidfd is not None:
            os.close(pidfd)


def _next_generation(status_file: str, gens: list[tuple[int, int]]) -> int:
    """The number a HUP's generation will have: after every attempt so far, failed
    ones included (the JSON knows them; the original's GEN:PID file does not)."""
    last = (read_json(json_path(status_file)) or {}).get("last_generation")
    return max([g for g, _ in gens] + ([last] if isinstance(last, int) else [])) + 1


def _upgrade_seq(status_file: str) -> tuple[int, dict[str, Any]]:
    """The starter's count of upgrades tried, and what the last one said."""
    up = (read_json(json_path(status_file)) or {}).get("upgrade")
    if not isinstance(up, dict):
        return 0, {}
    seq = _whole(up.get("seq"))
    return (seq or 0), up


def upgrade(config: ClientOptions) -> int:
    """USR2 the starter; 0 once the newly installed code runs its loop, 1 with
    the starter's line when it refused (the running code carries on)."""
    assert config.pid_file and config.status_file
    pid = _starter_pid(config.pid_file)
    if read_json(json_path(config.status_file)) is None:
        raise ControlError(
            f"--status-file={config.status_file}: nothing written yet "
            "(is the starter still starting?)"
        )
    status_file = config.status_file
    before, _ = _upgrade_seq(status_file)

    def answer() -> Optional[int]:
        seq, up = _upgrade_seq(status_file)
        if seq <= before:
            return None
        message = _text(up.get("message"), 200)
        if up.get("ok") is not True:
            raise ControlError(message or "the upgrade was refused")
        print(f"start_server: {message}", file=sys.stderr)
        return 0

    return await_answer(
        config, pid, lambda: os.kill(pid, signal.SIGUSR2), answer, what="the upgrade",
        timed_out=lambda: f"timed out after {config.timeout:g} s waiting for start_server "
        f"(pid {pid}) to run the upgraded code",
    )


def stop(config: ClientOptions) -> int:
    """TERM the starter; 0 once it released its pid-file lock (it has exited)."""
    assert config.pid_file
    fd, pid = _open_held(config.pid_file)
    try:
        print(f"stop_server (pid:{os.getpid()}) stopping now (pid:{pid})...", file=sys.stderr)
        os.kill(pid, signal.SIGTERM)
        # The starter holds the lock for life; a blocking flock returns when it is gone.
        locker = threading.Thread(target=fcntl.flock, args=(fd, fcntl.LOCK_EX), daemon=True)
        locker.start()
        locker.join(config.timeout)
        if locker.is_alive():
            raise ControlError(
                f"timed out after {config.timeout:g} s; start_server (pid {pid}) is still running"
            )
        return 0
    finally:
        os.close(fd)


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _since(detail: Mapping[str, Any], key: str, now: float) -> Optional[float]:
    """Seconds from the wall-clock time at ``key`` to ``now`` (None if not a time).

    Within a century either way: inf, 1e300 or a string is no time.
    """
    at = detail.get(key)
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not abs(now - at) < 3.2e9:
        return None
    return float(now - at)


# The JSON sidecar is read as untrusted input: each value the table shows is
# checked for its type and range, strings are bounded and made printable.


def _whole(value: Any, maximum: int = 2**62) -> Optional[int]:
    """A whole number from the JSON (not a bool, not absurd), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum:
        return value
    return None


def _text(value: Any, size: int = 60) -> str:
    """A string from the JSON, printable and bounded: no escape sequence reaches the terminal."""
    if not isinstance(value, str):
        return ""
    return "".join(c if c.isprintable() else "?" for c in value[:size])


def _worker(g: Mapping[str, Any]) -> dict[str, Any]:
    """One worker of the JSON, every value checked ("?" or None where it is no value)."""
    number, slot = _whole(g.get("generation")), _whole(g.get("worker", 0))
    pid = _whole(g.get("pid"), PID_MAX)
    return {
        "generation": "?" if number is None else number,
        "worker": "?" if slot is None else slot,
        "pid": "?" if pid is None else pid,
        "state": _text(g.get("state"), 20) or "?",
        "ready": g.get("ready") is True,
        "spawned_at": g.get("spawned_at"),  # checked by _since
        "memory": _whole(g.get("memory")),
        "fds": _whole(g.get("fds")),
        "restarts": _whole(g.get("restarts")),
        "status": _text(g.get("status")),
    }


def status(config: ClientOptions, as_json: bool) -> int:
    """Print what the running starter publishes: a table, or JSON."""
    assert config.pid_file and config.status_file
    pid = _starter_pid(config.pid_file)
    detail = read_detail(config.status_file, pid)
    if not detail.get("generations") and not os.path.lexists(config.status_file):
        # Not "nothing is serving": a mistyped path, or a file removed under the
        # starter, says nothing about what serves.
        raise ControlError(
            f"--status-file={config.status_file}: there is no such file (not written yet, "
            "or not the running starter's --status-file)"
        )
    if as_json:
        print(json.dumps(detail, indent=2, sort_keys=True, allow_nan=False))
        return 0
    for line in render(detail, pid, time.time()):
        print(line)
    return 0


def read_detail(status_file: str, pid: int) -> dict[str, Any]:
    """The JSON sidecar, or what the ``GEN:PID`` lines say where there is none."""
    detail = read_json(json_path(status_file))
    if detail is None:
        # Written by another implementation: the GEN:PID lines are all there is.
        detail = {
            "starter_pid": pid,
            "generations": [
                {"generation": g, "pid": p, "state": "active"}
                for g, p in _generations(status_file)
            ],
        }
    return detail


def workers_of(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The workers the JSON lists, each value checked."""
    listed = detail.get("generations")
    listed = listed if isinstance(listed, list) else []
    return [_worker(g) for g in listed if isinstance(g, dict)]


def render(detail: Mapping[str, Any], pid: int, now: float, live: bool = False) -> list[str]:
    """The ``--status`` table of a JSON sidecar, whatever the file holds;
    ``live`` (``--watch``) adds each slot's restarts and the starter's last event."""
    workers = workers_of(detail)
    shown_pid = _whole(detail.get("starter_pid"), PID_MAX) or pid
    lines = [
        f"start_server pid {shown_pid}: {_headline(workers, _whole(detail.get('workers')))}",
        *_table(workers, now, live),
        *roll_lines(detail),
        *_failure_lines(detail, now),
        *_upgrade_lines(detail, now),
    ]
    event = _text(detail.get("last_event"), 200)
    if live and event:
        ago = _since(detail, "last_event_at", now)
        lines.append(f"last event{f' {_age(ago)} ago' if ago is not None else ''}: {event}")
    return lines


def roll_lines(detail: Mapping[str, Any]) -> list[str]:
    """A rolling restart in progress: ``rolling: generation 7: 3/8 workers``."""
    roll = detail.get("rolling")
    if not isinstance(roll, dict):
        return []
    number, started = _whole(roll.get("generation")), _whole(roll.get("started"))
    workers = _whole(roll.get("workers"))
    if number is None or started is None or workers is None:
        return []
    return [f"rolling: generation {number}: {started}/{workers} workers"]


def _upgrade_lines(detail: Mapping[str, Any], now: float) -> list[str]:
    """After an upgrade in place: the version now running, and since when."""
    up = detail.get("upgrade")
    if not isinstance(up, dict) or up.get("ok") is not True:
        return []
    ago = _since(up, "at", now)
    when = f" {_age(ago)} ago" if ago is not None else ""
    return [f"running start_server {_text(detail.get('version'), 30)}, upgraded in place{when}"]


def _headline(workers: list[dict[str, Any]], count: Optional[int] = None) -> str:
    """Which generation serves, and which are starting or retiring; the live
    count (``--scale``) while the serving generation is not at it."""
    gens: dict[Any, list[str]] = {}
    for w in workers:
        gens.setdefault(w.get("generation"), []).append(str(w.get("state")))
    serving = [n for n, states in gens.items() if "active" in states]
    parts = []
    if serving:
        states = gens[serving[-1]]
        parts.append(f"serving generation {serving[-1]}")
        if "starting" in states:
            parts[-1] += f" ({states.count('starting')} of {len(states)} workers starting)"
        parts[-1] += _scaling(workers, serving[-1], count)
    else:
        parts.append("nothing is serving")
    for number, states in gens.items():
        if number in serving[-1:]:
            continue
        if "retiring" in states:
            parts.append(f"generation {number} retiring")
        elif "starting" in states:
            parts.append(f"generation {number} starting")
        elif "active" in states:
            parts.append(f"generation {number} active")
    return "; ".join(parts)


def _scaling(workers: list[dict[str, Any]], serving: Any, count: Optional[int]) -> str:
    """``, scaling to N workers`` while the serving generation's slots are not
    0..N-1 (``--scale``, TTIN, TTOU) and no other generation is starting."""
    if count is None or any(
        w.get("generation") != serving and w.get("state") == "starting" for w in workers
    ):
        return ""
    slots = {w.get("worker") for w in workers
             if w.get("generation") == serving and w.get("state") in ("active", "starting")}
    if slots == set(range(count)):
        return ""
    return f", scaling to {count} worker{'s' if count != 1 else ''}"


_COLUMNS = ("GEN", "WORKER", "PID", "STATE", "READY", "UPTIME", "MEMORY", "FDS", "STATUS")
_RESTARTS_AT = _COLUMNS.index("STATUS")  # where --watch adds its RESTARTS column


def _table(workers: list[dict[str, Any]], now: float, live: bool = False) -> list[str]:
    """One row per worker: uptime, memory (the starter's figure, else measured now),
    open fds (the starter's figure: it counts them with an fd limit); ``live``:
    the replacements spawned in its slot too."""
    measured: dict[int, int] = {}
    if any(not isinstance(w.get("memory"), int) for w in workers):
        from .procfs import measure

        measured = measure(w["pid"] for w in workers if isinstance(w.get("pid"), int)).usage
    rows: list[list[Any]] = [list(_COLUMNS)]
    for w in workers:
        memory, fds = w.get("memory"), w.get("fds")
        if not isinstance(memory, int):
            memory = measured.get(w.get("pid"))  # type: ignore[arg-type]
        rows.append(
            [
                w.get("generation"),
                w.get("worker", 0),
                w.get("pid"),
                w.get("state", "?"),
                "yes" if w.get("ready") else "-",
                _age(_since(w, "spawned_at", now)),
                f"{memory / 1048576:.1f}M" if isinstance(memory, int) else "-",
                fds if isinstance(fds, int) else "-",
                w.get("status") or "",
            ]
        )
    if live:
        rows[0].insert(_RESTARTS_AT, "RESTARTS")
        for row, w in zip(rows[1:], workers):
            restarts = w.get("restarts")
            row.insert(_RESTARTS_AT, restarts if isinstance(restarts, int) else "-")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _failure_lines(detail: Mapping[str, Any], now: float) -> list[str]:
    """The last failed start, and when the next attempt is due."""
    out = []
    failed = _whole(detail.get("failed_generation"))
    if failed is not None:
        ago = _since(detail, "failed_at", now)
        when = f" {_age(ago)} ago" if ago is not None else ""
        why = _text(detail.get("failed_reason"), 200) or "?"
        out.append(f"last failed: generation {failed}{when}: {why}")
    wait = _since(detail, "next_attempt_at", now)
    if wait is not None:
        out.append(f"next attempt in {_age(-wait)}")
    return out


__all__ = [
    "ClientOptions",
    "ControlError",
    "FileError",
    "client_options",
    "restart",
    "status",
    "stop",
]
