"""``--status --watch``: the status, live, until ``q`` or Ctrl-C.

It sleeps on the status file's directory (inotify, as ``--restart`` does),
the starter's pidfd and the keyboard; the starter is never asked for
anything. On a terminal the table is redrawn in place, and once a second for
the uptimes; otherwise one line per change of a worker (or, with ``--json``,
the JSON whenever it changes), for a log or a pipe. When the starter exits,
so does the watch: one line, exit 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import time

from .control import (
    ClientOptions,
    ControlError,
    _alive,
    _DirWatch,
    _pidfd,
    _starter_pid,
    _text,
    _whole,
    read_detail,
    render,
    roll_lines,
    workers_of,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any, Optional, TextIO, Union

TICK = 1.0  # seconds between redraws on a terminal (the uptimes move)
ENTER = "\x1b[?1049h\x1b[?25l"  # the terminal's alternate screen, cursor hidden
LEAVE = "\x1b[?25h\x1b[?1049l"


class _Leave(Exception):
    """``q``, Ctrl-C or TERM: the watch ends normally."""


class _Screen:
    """The table redrawn in place on a terminal (its alternate screen)."""

    tick: Optional[float] = TICK

    def __init__(self, out: TextIO, pid: int) -> None:
        self.out, self.pid = out, pid
        self.drawn: list[str] = []

    def __enter__(self) -> _Screen:
        self.out.write(ENTER)
        self.out.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.out.write(LEAVE)
        self.out.flush()

    def show(self, detail: Mapping[str, Any], now: float) -> None:
        width, height = shutil.get_terminal_size()
        lines = render(detail, self.pid, now, live=True)
        lines += ["", time.strftime("%H:%M:%S  q or Ctrl-C: leave", time.localtime(now))]
        lines = [line[:width] for line in lines[: max(height - 1, 1)]]
        if lines == self.drawn:
            return
        self.drawn = lines
        # Home, each line over the old one (the rest of it cleared), the rest of the screen cleared.
        self.out.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
        self.out.flush()


class _Lines:
    """One line per change of a worker, for a log or a pipe."""

    tick: Optional[float] = None

    def __init__(self, out: TextIO, pid: int) -> None:
        self.out, self.pid = out, pid
        self.seen: dict[tuple[Any, Any, Any], str] = {}
        self.failure: tuple[Any, Any] = (None, None)
        self.roll: list[str] = []

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, detail: Mapping[str, Any], now: float) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))  # as the log says it
        lines = []
        now_seen = {}
        for w in workers_of(detail):
            key = (w["generation"], w["worker"], w["pid"])
            now_seen[key] = what = _what(w)
            if self.seen.get(key) != what:
                lines.append(f"{_who(key)}: {what}")
        lines += [f"{_who(key)}: gone" for key in self.seen if key not in now_seen]
        self.seen = now_seen
        # A failure is its generation (each attempt has its own number) and its
        # reason; not failed_at, which the starter converts to wall-clock time
        # anew on every write, so it moves by microseconds from write to write.
        failure = (_whole(detail.get("failed_generation")), detail.get("failed_reason"))
        if failure[0] is not None and failure != self.failure:
            why = _text(failure[1], 200) or "?"
            lines.append(f"generation {failure[0]} failed to start: {why}")
            self.failure = failure
        roll = roll_lines(detail)
        if roll != self.roll:
            lines += roll
            self.roll = roll
        if lines:
            self.out.write("".join(f"{stamp} {line}\n" for line in lines))
            self.out.flush()


def _who(key: tuple[Any, Any, Any]) -> str:
    return f"generation {key[0]} worker {key[1]} pid {key[2]}"


def _what(w: Mapping[str, Any]) -> str:
    """A worker's state as its line says it (what a change is made of)."""
    parts = [str(w["state"])]
    if w["ready"]:
        parts.append("ready")
    if w.get("restarts"):
        parts.append(f"restarts {w['restarts']}")
    if w["status"]:
        parts.append(f"status: {w['status']}")
    return ", ".join(parts)


class _JsonLines(_Lines):
    """``--json``: the sidecar on one line whenever it says something new."""

    def show(self, detail: Mapping[str, Any], now: float) -> None:
        text = json.dumps({k: v for k, v in detail.items() if k != "updated_at"}, sort_keys=True)
        if self.seen.get((None, None, None)) != text:
            self.seen[(None, None, None)] = text
            self.out.write(text + "\n")
            self.out.flush()


@contextlib.contextmanager
def _keyboard() -> Iterator[Optional[int]]:
    """stdin in cbreak mode (keys one at a time, no echo; Ctrl-C still a signal),
    restored however we leave; None where stdin is no terminal."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):  # no stdin at all, or closed
        fd = -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _on_term(signum: int, frame: object) -> None:
    # Once: a second TERM (timeout(1) signals the command, then its whole group)
    # must not interrupt the way out.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Leave


def watch(config: ClientOptions, as_json: bool) -> int:
    """Show the running starter's status until ``q``, Ctrl-C or TERM (0),
    or until the starter exits (1)."""
    assert config.pid_file and config.status_file
    pid = _starter_pid(config.pid_file)
    out = sys.stdout
    view_type = _JsonLines if as_json else _Screen if out.isatty() else _Lines
    files = _DirWatch(os.path.dirname(os.path.abspath(config.status_file)))
    pidfd = _pidfd(pid)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        with _keyboard() as keys, view_type(out, pid) as view:
            _follow(config.status_file, pid, view, (files, pidfd, keys))
    except (_Leave, KeyboardInterrupt):
        return 0
    except BrokenPipeError:
        # A reader that went away (``| head``): nothing more to say, to anybody.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
    finally:
        # Leaving in any case: a TERM or Ctrl-C from now on would only turn the
        # way out into a traceback.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        files.close()
        if pidfd is not None:
            os.close(pidfd)
    raise ControlError(f"start_server (pid {pid}) exited")


def _follow(
    status_file: str,
    pid: int,
    view: Union[_Lines, _Screen],
    fds: tuple[_DirWatch, Optional[int], Optional[int]],
) -> None:
    """Show every change until the starter is gone (return) or we are told to leave."""
    files, pidfd, keys = fds
    waits = [fd for fd in (files.fd, pidfd, keys) if fd is not None]
    # Without inotify or a pidfd, look again every second (the starter never polls).
    tick = view.tick if files.fd is not None and pidfd is not None else TICK
    missing = False
    while True:
        # A status file that is not there (its directory removed under the
        # starter) says nothing: no worker is "gone" for it. Until it is back,
        # look again every second; once back, its directory may be a new one:
        # watched anew, then read.
        was_missing, missing = missing, not os.path.lexists(status_file)
        if was_missing and not missing:
            files.rewatch()
        if not missing:
            view.show(read_detail(status_file, pid), time.time())
        ready = select.select(waits, [], [], TICK if missing else tick)[0]
        if keys is not None and keys in ready:
            typed = os.read(keys, 64)
            if not typed:
                waits.remove(keys)  # end of input: Ctrl-C still ends the watch
                keys = None
            elif b"q" in typed.lower():
                raise _Leave
        if (pidfd is not None and pidfd in ready) or not _alive(pid):
            return
        files.drain()
