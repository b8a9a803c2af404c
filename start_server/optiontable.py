"""Every option of start_server, described once.

Each row says the option's name, kind, parser (or validator), default,
environment variable, whether a ``--config`` file may set it, its help and its
help section. From this table come click's parameters (options.py, the only
place that imports click), the building of a Config (config.py), the keys a
config file takes (configfile.py), the option sections of ``--help`` and the
generated reference (helptext.py, reference.py), and the defaults of the
Policy and the Config. It imports neither click nor typing: the long-lived
starter builds its Config from it.
"""

from __future__ import annotations

import os
import signal
import socket
import stat

from .spec import parse_count, parse_fraction, parse_path, parse_port, parse_signal, parse_size
from .values import CLIENT_TIMEOUT, SpecError, parse_seconds

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Optional

LIST, FLAG, VALUE, MODE = "list", "flag", "value", "mode"

MAX_WORKERS = 4096  # --workers: beyond this, a typing error rather than a plan
AUTO_KILL_OLD_DELAY = 5.0  # --kill-old-delay's default with auto-restart (else 0)

_CLIENT = "a client action, not a setting: give it on the command line"


class Option:
    """One row of the table.

    ``parse`` turns one raw value (a string of the command line, the file or
    the environment) into the Config's value, or raises SpecError naming what
    is wrong; None keeps the raw value (``--user``) or the option is no
    setting. ``field`` is the Policy's or Config's field it fills (None: none).
    ``refusal`` is why a config file may not set it (None: it may, if
    ``in_file``). ``shown`` is how the default appears in the help's
    ``{default}``.
    """

    __slots__ = (
        "alias_of",
        "bare",
        "default",
        "dest",
        "env",
        "field",
        "help",
        "in_file",
        "kind",
        "metavar",
        "name",
        "parse",
        "refusal",
        "section",
        "shown",
    )

    def __init__(
        self,
        name: str,
        section: str,
        help: str,
        *,
        kind: str = VALUE,
        metavar: Optional[str] = None,
        default: Any = None,
        parse: Optional[Callable[[Any], Any]] = None,
        env: Optional[str] = None,
        field: Optional[str] = "",
        in_file: bool = True,
        refusal: Optional[str] = None,
        alias_of: Optional[str] = None,
        shown: Optional[str] = None,
        dest: Optional[str] = None,
        bare: Optional[str] = None,
    ) -> None:
        self.name = name  # with underscores: the key of the raw options
        self.section = section
        self.help = help
        self.kind = kind
        self.metavar = metavar
        self.default = default
        self.parse = parse
        self.env = env
        self.field = name if field == "" else field
        self.in_file = in_file and refusal is None
        self.refusal = refusal
        self.alias_of = alias_of
        self.shown = shown
        self.dest = dest or name  # click's parameter name (``mode`` for the client switches)
        self.bare = bare  # the value of ``--name`` given without one (None: a value is needed)

    @property
    def flag(self) -> str:
        """``--pid-file``."""
        return "--" + self.name.replace("_", "-")

    @property
    def help_text(self) -> str:
        """The help with ``{default}`` filled in from the default."""
        if "{default}" not in self.help:
            return self.help
        shown = self.shown
        if shown is None:
            shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return self.help.replace("{default}", shown)


# ---- parsers and validators: a value, or SpecError saying what is wrong -----------------


def _seconds(allow_zero: bool = True) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        return parse_seconds(raw, allow_zero=allow_zero)

    return parse


def _count(minimum: int, maximum: int = 2**31 - 1) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        return parse_count(raw, minimum=minimum, maximum=maximum)

    return parse


def _directory(raw: str) -> str:
    if not os.path.isdir(raw):
        raise SpecError("not a directory")
    return raw


def check_parent(raw: str) -> None:
    """A file we are going to create needs a name and an existing directory."""
    if not raw:
        raise SpecError("empty path")
    parent = os.path.dirname(os.path.abspath(raw))
    if not os.path.isdir(parent):
        raise SpecError(f"directory {parent} does not exist")


def _file(raw: str) -> str:
    """A file we write: an existing directory, and not a directory itself."""
    check_parent(raw)
    if os.path.isdir(raw):
        raise SpecError("is a directory")
    return raw


def _log_target(raw: str) -> str:
    """A file, or ``| command`` (a pipe to a logger)."""
    return raw if raw.lstrip().startswith("|") else _file(raw)


def _socket_path(raw: str) -> Any:
    spec = parse_path(raw)
    check_parent(raw)
    if os.path.lexists(raw) and not stat.S_ISSOCK(os.lstat(raw).st_mode):
        raise SpecError("exists and is not a socket; refusing to replace it")
    return spec


def truthy(raw: Any) -> bool:
    """A flag from the environment (``ENABLE_AUTO_RESTART=1``): anything but empty or 0."""
    return raw.strip() not in ("", "0") if isinstance(raw, str) else bool(raw)


# ---- the table, in --help order -------------------------------------------------------------

SOCKETS, COMMAND, RESTARTS = "Sockets", "The server command", "Restarts and readiness"
HEALTH, FILES, CLIENTS = "Workers and health", "Files and logs", "Client commands"

TABLE: tuple[Option, ...] = (
    Option(
        "port", SOCKETS,
        "Bind PORT, HOST:PORT or [V6]:PORT; 'u' before the port for UDP; =FD to "
        "place the socket on that fd. Repeatable.",
        kind=LIST, metavar="SPEC", default=(), parse=parse_port, field="ports",
    ),
    Option(
        "path", SOCKETS, "Bind a unix stream socket. Repeatable.",
        kind=LIST, metavar="PATH", default=(), parse=_socket_path, field="paths",
    ),
    Option(
        "backlog", SOCKETS, "listen(2) backlog (default SOMAXCONN).",
        metavar="N", default=socket.SOMAXCONN, parse=_count(1),
    ),
    Option(
        "listen_fds", SOCKETS,
        "Also pass the sockets the systemd way: fds 3, 4, ... in SERVER_STARTER_PORT "
        "order, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES (gunicorn without --bind).",
        kind=FLAG, default=False, parse=truthy,
    ),
    Option(
        "dir", COMMAND, "Working directory of the server program.",
        metavar="DIR", parse=_directory,
    ),
    Option(
        "envdir", COMMAND, "daemontools envdir, re-read before every spawn (env ENVDIR).",
        metavar="DIR", parse=_directory, env="ENVDIR",
    ),
    Option(
        "user", COMMAND,
        "Run the server program as this user (its groups, HOME, USER, LOGNAME); "
        "the starter stays root.",
        metavar="NAME|UID", field=None,
    ),
    Option(
        "group", COMMAND,
        "Run the server program with this primary group (default: the --user's).",
        metavar="NAME|GID", field=None,
    ),
    Option(
        "interval", RESTARTS,
        "A generation alive this long has started (default {default}; fractions allowed).",
        metavar="SECONDS", default=1.0, parse=_seconds(),
    ),
    Option(
        "wait_ready", RESTARTS,
        "A generation has started only when it sends READY=1 to NOTIFY_SOCKET.",
        kind=FLAG, default=False, parse=truthy,
    ),
    Option(
        "ready_timeout", RESTARTS,
        "With --wait-ready: stop a generation not ready by then (default {default}).",
        metavar="SECONDS", default=60.0, parse=_seconds(allow_zero=False),
    ),
    Option(
        "signal_on_hup", RESTARTS, "Signal for old generations on a restart (default {default}).",
        metavar="SIG", default=signal.SIGTERM, shown="TERM", parse=parse_signal,
    ),
    Option(
        "kill_old_delay", RESTARTS,
        "Wait this long after a start before signalling old generations "
        f"(default {AUTO_KILL_OLD_DELAY:g} with auto-restart, else 0; env KILL_OLD_DELAY).",
        metavar="SECONDS", parse=_seconds(), env="KILL_OLD_DELAY",
    ),
    Option(
        "stop_timeout", RESTARTS,
        "SIGKILL a signalled generation's process group after this long (default: wait forever).",
        metavar="SECONDS", parse=_seconds(),
    ),
    Option(
        "signal_on_term", RESTARTS,
        "Signal for all generations when the starter gets TERM (default {default}).",
        metavar="SIG", default=signal.SIGTERM, shown="TERM", parse=parse_signal,
    ),
    Option(
        "backoff_max", RESTARTS, "Longest delay between failed start attempts (default {default}).",
        metavar="SECONDS", default=30.0, parse=_seconds(),
    ),
    Option(
        "min_uptime", RESTARTS,
        "A started worker that ran this long and then died is respawned at once; "
        "an earlier death counts for the crash backoff (default {default}).",
        metavar="SECONDS", default=1.0, parse=_seconds(),
    ),
    Option(
        "enable_auto_restart", RESTARTS,
        "Restart every --auto-restart-interval seconds (env ENABLE_AUTO_RESTART).",
        kind=FLAG, default=False, parse=truthy, env="ENABLE_AUTO_RESTART", field="auto_restart",
    ),
    Option(
        "auto_restart_interval", RESTARTS, "Default {default} (env AUTO_RESTART_INTERVAL).",
        metavar="SECONDS", default=360.0, parse=_seconds(allow_zero=False),
        env="AUTO_RESTART_INTERVAL",
    ),
    Option(
        "auto_restart_jitter", RESTARTS,
        "Spread each auto-restart deadline randomly by up to this much (default {default}).",
        metavar="SECONDS", default=0.0, parse=_seconds(),
    ),
    Option(
        "workers", HEALTH,
        "Run N copies of the command per generation (SERVER_STARTER_WORKER=0..N-1).",
        metavar="N", default=1, parse=_count(1, MAX_WORKERS),
    ),
    Option(
        "rolling", HEALTH,
        "Restart the workers K at a time (--rolling alone: one): a new one starts, then an "
        "old one is signalled, the next once that one exited; at most N + K at once.",
        metavar="K", default=0, parse=_count(1, MAX_WORKERS), bare="1",
    ),
    Option(
        "max_memory", HEALTH,
        "Restart a generation (a worker, with --workers) whose process tree's PSS stays "
        "over SIZE (400M, 1.5G, bytes) on two checks in a row.",
        metavar="SIZE", parse=parse_size,
    ),
    Option(
        "max_open_files", HEALTH,
        "Restart a generation (a worker, with --workers) whose process tree holds more "
        "than N open fds on two checks in a row (its listening sockets and fds 0-2 aside).",
        metavar="N", parse=_count(1),
    ),
    Option(
        "max_fd_fraction", HEALTH,
        "The same, with the limit a fraction (0 < F <= 1) of the worker's own "
        "RLIMIT_NOFILE; with --max-open-files, the lower limit applies.",
        metavar="F", parse=parse_fraction,
    ),
    Option(
        "health_check_interval", HEALTH,
        "How often --max-memory and the fd limits are checked (default {default}).",
        metavar="SECONDS", default=5.0, parse=_seconds(allow_zero=False),
    ),
    Option(
        "memory_check_interval", HEALTH, "The old name of --health-check-interval.",
        metavar="SECONDS", alias_of="health_check_interval", field=None,
    ),
    Option(
        "config", FILES,
        "Read options from a YAML file: long options as keys, the program as "
        "'command: [prog, args...]'. The command line wins over the file, the file over "
        "environment variables.",
        metavar="FILE", field=None, refusal="a config file cannot name another one",
    ),
    Option(
        "pid_file", FILES, "Write, lock and hold the starter's pid file.",
        metavar="FILE", parse=_file,
    ),
    Option(
        "status_file", FILES, "Write GEN:PID lines of live generations.",
        metavar="FILE", parse=_file,
    ),
    Option(
        "log_file", FILES,
        "Send stdout and stderr to FILE (appended) or into CMD; USR1 reopens FILE.",
        metavar="FILE|'| CMD'", parse=_log_target,
    ),
    Option(
        "daemonize", FILES, "Detach (needs --log-file).",
        kind=FLAG, default=False, parse=truthy,
    ),
    Option(
        "restart", CLIENTS,
        "Client: HUP the running starter, wait until the new generation took over "
        "(needs --pid-file, --status-file).",
        kind=MODE, dest="mode", field=None, refusal=_CLIENT,
    ),
    Option(
        "stop", CLIENTS,
        "Client: TERM the running starter, wait until it exited (needs --pid-file).",
        kind=MODE, dest="mode", field=None, refusal=_CLIENT,
    ),
    Option(
        "upgrade", CLIENTS,
        "Client: make the running starter re-execute the start_server now installed, "
        "keeping its pid, sockets and workers; wait until it runs "
        "(needs --pid-file, --status-file).",
        kind=MODE, dest="mode", field=None, refusal=_CLIENT,
    ),
    Option(
        "status", CLIENTS,
        "Client: show the generations of the running starter "
        "(needs --pid-file, --status-file).",
        kind=MODE, dest="mode", field=None, refusal=_CLIENT,
    ),
    Option(
        "scale", CLIENTS,
        "Client: set the running starter's number of workers to N, or add (+K) or "
        "retire (-K) some; wait until the serving generation runs that many "
        "(needs --pid-file, --status-file; until the starter restarts, see --workers).",
        metavar="N|+K|-K", field=None, refusal=_CLIENT,
    ),
    Option(
        "worker", CLIENTS,
        "With --restart: replace worker I (its slot, SERVER_STARTER_WORKER) alone, "
        "keeping the generation; wait until the new worker runs and the old one exited.",
        metavar="I", field=None, refusal=_CLIENT,
    ),
    Option(
        "json", CLIENTS, "With --status: print JSON.",
        kind=FLAG, dest="as_json", field=None,
        refusal="an output switch of --status, not a setting: give it on the command line",
    ),
    Option(
        "watch", CLIENTS,
        "With --status: show it live, redrawn on every change, until q or Ctrl-C "
        "(one line per change when stdout is not a terminal).",
        kind=FLAG, field=None, in_file=False,
    ),
    Option(
        "timeout", CLIENTS,
        "Deadline of --restart, --stop, --upgrade and --scale (default {default}).",
        metavar="SECONDS", default=CLIENT_TIMEOUT, parse=_seconds(allow_zero=False),
    ),
)

BY_NAME = {o.name: o for o in TABLE}

def default(name: str) -> Any:
    """The default of option ``name`` (the one place it is written)."""
    return BY_NAME[name].default


def file_kinds() -> dict[str, str]:
    """The options a --config file may set: name -> LIST, FLAG or VALUE."""
    return {o.name: o.kind for o in TABLE if o.in_file}


def refusals() -> dict[str, str]:
    """Options a --config file names in vain, with the reason."""
    return {o.name: o.refusal for o in TABLE if o.refusal is not None}


def aliases() -> dict[str, str]:
    """Two names of one setting, each way."""
    pairs = {o.name: o.alias_of for o in TABLE if o.alias_of is not None}
    return {**pairs, **{new: old for old, new in pairs.items()}}


def sections() -> list[tuple[str, tuple[str, ...]]]:
    """``[(title, (--option, ...)), ...]`` in table order."""
    out: dict[str, list[str]] = {}
    for o in TABLE:
        out.setdefault(o.section, []).append(o.flag)
    return [(title, tuple(flags)) for title, flags in out.items()]
