"""The only place that blocks: one selector, woken by a signal, a child's exit,
a notify datagram, or the core's next deadline. Never a poll.

Signal handlers do nothing: ``signal.set_wakeup_fd`` writes each signal number
to a non-blocking socketpair that sits in the selector, and the loop turns the
numbers into events. Nothing is logged, reaped or raised inside a handler, so
there is no reentrancy to get wrong (the trick trio's ``_wakeup_socketpair``
explains). Every wake-up reaps, so a coalesced SIGCHLD loses no exit.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Iterator, Mapping

from . import __version__, children, procfs, publish, signals, spawns, upstream
from .config import Config
from .control_socket import KEY as CONTROL
from .control_socket import ControlSocket
from .core import Supervisor
from .envdir import read_envdir
from .events import (
    Exit,
    Exited,
    Kill,
    Leftovers,
    Log,
    Measure,
    NotifyUpstream,
    Publish,
    Signalled,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    Tick,
)
from .files import FileError, PidFile, StatusFile, directory_warnings
from .log import log, log_exception
from .notify_sockets import NotifySockets
from .sockets import (
    LISTEN_VARS,
    Bound,
    adopt_systemd,
    bind_all,
    close_all,
    env_value,
    foreign_listen_fds,
    listen_env,
    ordered,
)
from .spawns import Pending, Spawns
from .spec import signal_name

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from .daemonize import LogTarget
    from .events import Action, Event

EXIT_SOFTWARE = 70  # sysexits.h EX_SOFTWARE: an internal error stopped the starter
BATCH = 64  # events handled per pass before the selector is read again
MAX_WAIT = 86400.0  # the longest single wait: far below what a timeout can hold

# What each action does, for the line that says it could not be done.
_EFFECT = {
    "Measure": "measure memory use in /proc",
    "Kill": "send a signal",
    "NotifyUpstream": "notify the service manager",
}

# Envdir variables that tune the starter itself, as in the original.
POLICY_VARS = ("KILL_OLD_DELAY", "ENABLE_AUTO_RESTART", "AUTO_RESTART_INTERVAL")


def _uniform() -> float:
    """A random float in [0, 1) for jitter: os.urandom rather than the random
    module, which the starter would load (and keep) for this alone."""
    return int.from_bytes(os.urandom(7), "big") / (1 << 56)


def wait_time(deadline: Optional[float], now: float, pending: bool = False) -> Optional[float]:
    """The selector's timeout: until ``deadline`` (None: none), at once when
    events are ``pending``. Clamped to ``MAX_WAIT``, so that no deadline, however
    far (or not a number), can overflow the kernel's timeout; waking early only
    costs a pass that finds nothing due."""
    if pending:
        return 0.0
    if deadline is None:
        return None
    delta = deadline - now
    if not delta < MAX_WAIT:  # also NaN
        return MAX_WAIT
    return max(0.0, delta)


def _noop(signum: int, frame: Any) -> None:
    """The handler: the C-level handler already wrote signum to the wake-up fd."""


@contextlib.contextmanager
def wakeup_signals() -> Iterator[socket.socket]:
    """Route the starter's signals (``signals.USED``, ``signals.STRAY``, and
    ``signals.SCALING`` without a controlling terminal, else ignored) to a
    readable socket for the duration; then hold them all back again until the
    process exits."""
    read_sock, write_sock = socket.socketpair()
    read_sock.setblocking(False)
    write_sock.setblocking(False)
    signals.ignore_pipe()
    scaling = signal.SIG_IGN if signals.has_terminal() else _noop
    old_handlers = {s: signal.signal(s, _noop) for s in signals.USED + signals.STRAY}
    old_handlers.update({s: signal.signal(s, scaling) for s in signals.SCALING})
    old_fd = signal.set_wakeup_fd(write_sock.fileno(), warn_on_full_buffer=False)
    # Blocked since the first instruction (cli.main); pending ones arrive now.
    signals.unblock()
    try:
        yield read_sock
    finally:
        signals.block()
        signal.set_wakeup_fd(old_fd)
        for s, handler in old_handlers.items():
            signal.signal(s, handler)
        read_sock.close()
        write_sock.close()


class Loop:
    """Owns the selector, the notify sockets and the core; performs its actions."""

    def __init__(
        self,
        *,
        config: Config,
        bound: list[Bound],
        status: Optional[StatusFile],
        upstream: Optional[str],
        base_env: Mapping[str, str],
        reopen_logs: Optional[Any] = None,
    ) -> None:
        self.config = config
        self.bound = bound
        self.status = status
        self.upstream = upstream
        self.base_env = dict(base_env)
        self.reopen_logs = reopen_logs
        self.sup = Supervisor(config.policy)
        self.sel = selectors.DefaultSelector()
        self.notify = NotifySockets(self.sel, config.user.owner() if config.user else None)
        self.spawns = Spawns(self.sel)  # forked, exec not yet confirmed
        self.control = ControlSocket(self.sel, self.notify)  # --scale, --restart --worker
        self.exit_code: Optional[int] = None
        self.port_env = env_value(bound)
        # --listen-fds: systemd's protocol too; the sockets then sit on fds 3, 4, ...
        self.listen_env = listen_env(bound) if config.listen_fds and bound else {}
        self.sup.port_env = self.listen_env.get("SERVER_STARTER_PORT", self.port_env)
        self.pass_fds = [b.fd for b in ordered(bound)]  # the order --listen-fds lays out
        self.helper_pids: tuple[int, ...] = ()  # our children that are no worker (a log command)
        self.queue: deque[Event] = deque()  # events not yet handled, oldest first
        self.published: Optional[Publish] = None  # what the status files last said
        self.lines: list[Log] = []  # the pass's log lines, written after publishing
        # For an upgrade (upgrade.py): what it hands over, and what the status JSON tells.
        self.pidfile: Optional[PidFile] = None
        self.logs: Optional[Any] = None
        self.options: Optional[dict[str, Any]] = None  # as read; None: no upgrade possible
        self.upgrade_asked = False
        self.upgrades: dict[str, Any] = {"seq": 0, "ok": None, "message": "", "at": None}

    # ---- the loop ---------------------------------------------------------

    def run(self, first: Optional[Event] = None) -> int:
        """Supervise until the core says exit. An unexpected error is logged with
        its traceback, the generations are stopped, and the result is 70.
        ``first``: the first event (a Start, or a Tick when resuming an upgrade)."""
        with wakeup_signals() as wake:
            self.sel.register(wake, selectors.EVENT_READ, None)
            self.control.open()
            try:
                self.queue.append(first or Start())
                try:
                    self._loop(wake)
                except Exception:
                    self._crashed(wake)
            finally:
                self.spawns.close()
                self.control.close()
                self.notify.close()
                self.sel.close()
        assert self.exit_code is not None
        return self.exit_code

    def _loop(self, wake: socket.socket) -> None:
        while True:
            self._dispatch()
            if self.exit_code is not None:
                return
            if self.upgrade_asked and not self.queue and not self.spawns.pending:
                self._upgrade(wake)
            due = [d for d in (self.sup.next_deadline(), self.notify.next_deadline())
                   if d is not None]
            ready = self.sel.select(wait_time(min(due) if due else None, time.monotonic(),
                                              bool(self.queue)))
            self.notify.run_due(time.monotonic())
            self.queue.extend(self._gather(ready, wake))
            if not self.queue:
                self.queue.append(Tick())

    def _crashed(self, wake: socket.socket) -> None:
        """A programming error: log it, stop the generations as TERM would, exit 70.

        If stopping through the core fails too, every child is signalled and
        killed directly: never a worker left serving with nobody managing it.
        """
        self._flush_log()
        log_exception("unexpected error; stopping the generations")
        try:
            self.exit_code = None
            # What is queued stays: a spawn's result must reach the core.
            self.queue.append(Signalled(signal.SIGTERM))
            self._loop(wake)
        except Exception:
            log_exception("unexpected error while stopping; stopping every child directly")
            grace = self.config.policy.stop_timeout
            children.stop_all(
                [w.pid for w in self.sup.workers()] + self.spawns.pids() + self._leftovers(),
                self.config.policy.signal_on_term,
                10.0 if grace is None else grace,
            )
        self.exit_code = EXIT_SOFTWARE

    def _gather(self, ready: list[tuple[selectors.SelectorKey, int]],
                wake: socket.socket) -> list[Event]:
        """What woke us, as events: notifications, exits, then signals."""
        events: list[Event] = []
        signums: list[int] = []
        for key, _ in ready:
            if key.data is None:
                signums.extend(signals.drain(wake))
            elif key.data == CONTROL:
                events.extend(self.control.read())
            elif key.data != spawns.MARK:  # exec reports: all read by settle, below
                gen = self.sup.gens.get(key.data)
                # Forked workers whose Spawned is still queued (a pass handles
                # at most BATCH events) or not yet known: their datagrams are
                # queued after it.
                forked = [e.pid for e in self.queue
                          if isinstance(e, Spawned) and e.number == key.data]
                forked += self.spawns.pids(key.data)
                events.extend(self.notify.read(key.data, gen, time.monotonic(), forked))
        # The spawns answered now come first: before what their workers said or did.
        answers, reaped = self.spawns.settle(children.reap())
        events[:0] = answers
        answered = {e.pid for e in answers if isinstance(e, Spawned)}
        if any(self.sup.by_pid(pid) is not None or pid in answered for pid, _ in reaped):
            # A worker is gone: what it left behind was re-parented to us.
            # Told before the exit, so that a stopping starter whose last
            # worker this was stops (and reaps) the leftovers before it exits.
            events.append(Leftovers(tuple(self._leftovers())))
        for pid, raw in reaped:
            events.append(Exited(pid, raw, children.describe(raw)))
        for signum in signums:
            if signum == signal.SIGCHLD:
                continue
            if signum == signal.SIGUSR1:
                self._reopen()
                continue
            if signum == signal.SIGUSR2:
                self.upgrade_asked = True
                continue
            if signum in signals.STRAY:
                log(f"received {signal_name(signum)}: not used by start_server, ignored")
                continue
            events.append(Signalled(signum))
        return events

    def _leftovers(self) -> list[int]:
        known = {w.pid for w in self.sup.workers()} | set(self.helper_pids)
        known.update(self.spawns.pids())  # forked, not yet known to the core
        try:
            kids = procfs.own_children()
        except OSError as exc:
            log(f"cannot list our children: {exc.strerror or exc}")
            return []
        return [pid for pid in kids if pid not in known]

    def _upgrade(self, wake: socket.socket) -> None:
        """SIGUSR2: exec the start_server now installed (upgrade.py); returns
        only when that was refused or failed, told in one line and the status."""
        from . import upgrade

        self.upgrade_asked = False
        log(f"received USR2: upgrading start_server {__version__}")
        # systemd's Type=notify-reload matches a reload by its timestamp.
        self._notify_upstream(f"RELOADING=1\nMONOTONIC_USEC={int(time.monotonic() * 1e6)}")
        try:
            if self.options is None:
                raise upgrade.UpgradeRefused("this starter cannot re-execute itself")
            upgrade.execute(self, self.options, wake)
        except upgrade.UpgradeRefused as exc:
            message = f"upgrade refused: {exc}; start_server {__version__} carries on"
            log(message)
            self.upgrade_done(False, message)
            self._publish(self.sup.snapshot())
            self._notify_upstream("READY=1")

    def upgrade_done(self, ok: bool, message: str) -> None:
        """Tell the status JSON (``--upgrade`` waits on it)."""
        seq = int(self.upgrades.get("seq", 0)) + 1
        self.upgrades = {"seq": seq, "ok": ok, "message": message, "at": time.time()}
        self.published = None  # written at the end of the next pass

    def _notify_upstream(self, message: str) -> None:
        if self.upstream:
            try:
                upstream.notify_socket(self.upstream, message)
            except OSError as exc:
                log(f"cannot notify the service manager: {exc}")

    def _reopen(self) -> None:
        if self.reopen_logs is None:
            log("received USR1: no log file to reopen")
            return
        self.reopen_logs()

    # ---- events in, actions out ------------------------------------------

    def _dispatch(self) -> None:
        """Handle the queued events one at a time, in order, then publish once.

        The core handles one event and returns actions; an action may queue a
        follow-up event (Spawn -> Spawned, Measure -> Measured), handled after
        what was queued before it: nothing re-enters the core. Every event of
        one pass is handled at the pass's time, so a timer that an event of
        the pass re-arms is not due again before the next pass, and at most
        ``BATCH`` events are handled before the selector is read again.
        """
        now = time.monotonic()
        for _ in range(BATCH):
            if not self.queue or self.exit_code is not None:
                break
            for action in self.sup.handle(self.queue.popleft(), now):
                self._perform(action)
        self.notify.prune(self.sup.gens)
        self._publish(self.sup.snapshot())
        self._flush_log()

    def _flush_log(self) -> None:
        """The pass's log lines, written once the status files show their state:
        a line in the log is never ahead of what ``--status`` says."""
        lines, self.lines = self.lines, []
        for line in lines:
            log(line.message, line.number, line.pid)

    def _perform(self, action: Action) -> None:
        """Carry out one action; an OSError of an effect is logged, not fatal
        (spawning has its own: a failed spawn is an event)."""
        try:
            if isinstance(action, Log):
                self.lines.append(action)
            elif isinstance(action, Spawn):
                failed = self._spawn(action.number, action.slot)
                if failed is not None:
                    self.queue.append(failed)
            elif isinstance(action, Measure):
                self.queue.append(procfs.measure(action.pids, action.fds, self.pass_fds))
            elif isinstance(action, Kill):
                children.kill(action.pid, action.signum, action.group)
            elif isinstance(action, NotifyUpstream):
                if self.upstream:
                    upstream.notify_socket(self.upstream, action.message)
            elif isinstance(action, Exit):
                self.exit_code = action.code
        except OSError as exc:
            what = _EFFECT.get(type(action).__name__, type(action).__name__)
            log(f"cannot {what}: {exc}")

    def _spawn(self, number: int, slot: int) -> Optional[Event]:
        """Fork a worker; its answer comes once its exec report is in (spawns.py),
        or at once (SpawnFailed) if it could not even be forked."""
        envdir = read_envdir(self.config.envdir)
        overrides = {k: v for k, v in envdir.items() if k in POLICY_VARS and v is not None}
        env = worker_env(self.base_env, envdir, number, slot,
                         port_env=self.port_env, listen=self.listen_env)
        try:
            env["NOTIFY_SOCKET"] = self.notify.address(number)
            pid, report = children.start(
                self.config.command,
                env,
                self.config.dir,
                self.pass_fds,
                listen_fds=bool(self.listen_env),
                user=self.config.user,
            )
        except OSError as exc:
            return SpawnFailed(number, str(exc), slot)
        self.spawns.add(Pending(number, slot, pid, report, overrides, _uniform()))
        return None

    def _publish(self, snap: Publish) -> None:
        """Write the status files when they would say something new."""
        if self.status is None or snap == self.published:
            return
        self.published = snap
        detail = publish.status_detail(snap, os.getpid(), time.monotonic())
        detail["version"] = __version__
        detail["upgrade"] = self.upgrades
        detail["control_socket"] = self.control.address
        try:
            self.status.write(publish.status_entries(snap), detail)
        except OSError as exc:
            log(f"cannot write status file {self.status.path}: {exc.strerror or exc}")


def child_base_env(config: Config, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment every generation starts from (before the envdir)."""
    env = dict(environ)
    env.pop("NOTIFY_SOCKET", None)  # children talk to us, never to our supervisor
    for name in LISTEN_VARS:  # systemd's sockets were ours; --listen-fds sets fresh ones
        env.pop(name, None)
    if config.user is not None:  # as a login would set them (an envdir may still override)
        env.update(config.user.environment())
    # The original exports what the options set, so children see them too.
    if config.envdir is not None:
        env["ENVDIR"] = config.envdir
    if config.policy.auto_restart:
        env["ENABLE_AUTO_RESTART"] = "1"
        env["AUTO_RESTART_INTERVAL"] = f"{config.policy.auto_restart_interval:g}"
    if config.policy.kill_old_delay is not None:
        env["KILL_OLD_DELAY"] = f"{config.policy.kill_old_delay:g}"
    return env


def worker_env(base: Mapping[str, str], envdir: Mapping[str, Optional[str]], number: int,
               slot: int, *, port_env: str, listen: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment: the base, the envdir's values on top (None:
    unset), then what the starter tells it (its sockets, generation and slot)."""
    env = dict(base)
    for name, value in envdir.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["SERVER_STARTER_PORT"] = port_env
    env["SERVER_STARTER_GENERATION"] = str(number)
    env["SERVER_STARTER_WORKER"] = str(slot)
    env.update(listen)
    return env


def written_files(config: Config) -> list[tuple[str, str]]:
    """The files the starter writes, as (option, path)."""
    out = [("--pid-file", config.pid_file), ("--status-file", config.status_file)]
    if config.log_file is not None and not config.log_file.lstrip().startswith("|"):
        out.append(("--log-file", config.log_file))
    return [(option, path) for option, path in out if path is not None]


def serve(config: Config, environ: Mapping[str, str],
          options: Optional[dict[str, Any]] = None) -> int:
    """Set everything up, run the loop, and leave nothing behind."""
    from .daemonize import LogError, LogTarget, detaches

    detach = detaches(config.daemonize)
    bound, foreign = _listen(config, environ)
    pidfile: Optional[PidFile] = None
    status: Optional[StatusFile] = None
    logs: Optional[LogTarget] = None
    running = False
    try:
        if config.pid_file is not None:
            pidfile = PidFile(config.pid_file)
            # Our pid at once (nothing yet if we are about to fork): never the last one's.
            pidfile.acquire(None if detach else os.getpid())
        if config.log_file is not None:
            logs = LogTarget(config.log_file)
            logs.open()
        _announce(config, bound, foreign)
        if logs is not None:
            logs.redirect()
        if config.daemonize:
            _detach(detach, bound, pidfile)
        if pidfile is not None:
            pidfile.write(os.getpid())
        if config.status_file is not None:
            status = StatusFile(config.status_file)
        running = True
        starter = _new_loop(config, environ, bound, status, logs)
        starter.pidfile, starter.logs, starter.options = pidfile, logs, options
        children.become_subreaper()
        return starter.run()
    except (FileError, LogError):
        raise  # one line on stderr (cli.py): the pid file is locked, the log cannot be opened
    except Exception:
        # Logged here, while the log target is still fd 2: past the clean-up
        # below, a traceback would go to /dev/null.
        log_exception("unexpected error; start_server stops")
        return EXIT_SOFTWARE
    finally:
        _clean_up(status, bound, pidfile, running, logs)


def _detach(detach: bool, bound: list[Bound], pidfile: Optional[PidFile]) -> None:
    """``--daemonize``: into the background, or one line saying why not (PID 1)."""
    from .daemonize import daemonize

    if not detach:
        log("--daemonize: not detaching as PID 1 (the PID namespace would end with it)")
        return
    daemonize(
        [b.fd for b in bound] + ([pidfile.fd] if pidfile and pidfile.fd else []),
        stdin_is_socket=any(b.fd == 0 for b in bound),
    )
    log(f"detached into the background as pid {os.getpid()}")


def _listen(config: Config, environ: Mapping[str, str]) -> tuple[list[Bound], Optional[str]]:
    """The listening sockets, systemd's (adopted) or bound now, and the line
    to log about LISTEN_FDS meant for another process, if any."""
    adopted = adopt_systemd(list(config.ports), list(config.paths), environ)
    foreign = foreign_listen_fds(environ)
    if adopted is not None:
        for name in LISTEN_VARS:  # no generation may take them for its own
            os.environ.pop(name, None)
    return adopted or bind_all(list(config.ports), list(config.paths), config.backlog), foreign


def _announce(config: Config, bound: list[Bound], foreign: Optional[str]) -> None:
    """The first lines of the log: starting, warnings, what it listens on."""
    log(f"start_server (pid:{os.getpid()}) starting now...")
    for warning in directory_warnings(written_files(config), config.envdir):
        log(warning)
    if foreign is not None:
        log(foreign)
    for b in bound:
        how = ""
        if b.adopted:
            how = " adopted from systemd" + (f" (name {b.name})" if b.name else "")
        chosen = b.chosen_address()
        at = f"; port chosen by the kernel: {chosen}" if chosen else ""
        log(f"listening on {b.key} (fd {b.fd}{at}){how}")


def _new_loop(config: Config, environ: Mapping[str, str], bound: list[Bound],
              status: Optional[StatusFile], logs: Optional[LogTarget]) -> Loop:
    starter = Loop(
        config=config,
        bound=bound,
        status=status,
        upstream=environ.get("NOTIFY_SOCKET") or None,
        base_env=child_base_env(config, environ),
        reopen_logs=logs.reopen if logs is not None else None,
    )
    if logs is not None and logs.pid is not None:
        starter.helper_pids = (logs.pid,)
    return starter


def _clean_up(status: Optional[StatusFile], bound: list[Bound], pidfile: Optional[PidFile],
              running: bool, logs: Optional[Any]) -> None:
    """Leave nothing behind: status files, sockets, pid file; the log last."""
    if status is not None:
        try:
            status.remove()
        except OSError as exc:
            log(f"cannot remove status file {status.path}: {exc.strerror}")
    close_all(bound)
    if pidfile is not None:
        if running:
            pidfile.release()
        else:
            pidfile.abandon()
    if logs is not None:
        logs.close()


def resume_serving(config: Config, environ: Mapping[str, str], doc: dict[str, Any],
                   sup: Supervisor, bound: list[Bound]) -> int:
    """After an upgrade's exec (upgrade.py): adopt what the old code handed
    over, say so, and run the loop on from where it was."""
    from .daemonize import LogTarget
    from .upgrade import upgraded_line

    pidfile = status = logs = None
    try:
        if doc["pid_file"] is not None and config.pid_file is not None:
            pidfile = PidFile.adopt(config.pid_file, doc["pid_file"])
        if config.status_file is not None:
            status = StatusFile.adopt(config.status_file, bool(doc["status_written"]))
        if config.log_file is not None:
            logs = LogTarget.adopt(config.log_file, doc["log"])
        starter = Loop(
            config=config, bound=bound, status=status,
            upstream=environ.get("NOTIFY_SOCKET") or None,
            base_env=child_base_env(config, environ),
            reopen_logs=logs.reopen if logs is not None else None,
        )
        port_env = starter.sup.port_env
        starter.sup = sup
        sup.port_env = port_env
        starter.helper_pids = tuple(doc["helper_pids"])
        starter.pidfile, starter.logs, starter.options = pidfile, logs, doc["options"]
        starter.notify.adopt(doc["notify"])
        starter.upgrades = dict(doc["upgrades"])
        line = upgraded_line(doc)
        log(line)
        starter.upgrade_done(True, line)
        starter._notify_upstream(f"READY=1\nSTATUS=upgraded to {__version__}")
        children.become_subreaper()
        return starter.run(Tick())
    except Exception:
        log_exception("unexpected error after an upgrade; start_server stops")
        return EXIT_SOFTWARE
    finally:
        _clean_up(status, bound, pidfile, True, logs)
