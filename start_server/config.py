"""One frozen ``Config`` from the command line, a config file and the environment.

Precedence, as the original's code has it: an option beats the environment
variable of the same meaning (``KILL_OLD_DELAY`` ...), which beats the default;
an envdir file beats them all and is re-read before every spawn. A key of a
``--config`` file is an option too (the command line fills in over it, see
configfile.py): command line > config file > environment > default. A flag
is None when not given, so an explicit false can beat the environment. Every
validation error names the option and the value.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field

from .identity import Identity
from .identity import resolve as resolve_identity
from .policy import HEALTH_CHECK_INTERVAL, Policy
from .spec import (
    PathSpec,
    PortSpec,
    check_duplicates,
    check_fd_collisions,
    parse_count,
    parse_fraction,
    parse_path,
    parse_port,
    parse_signal,
    parse_size,
)
from .values import ConfigError, SpecError, option_value, seconds_value

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional


MAX_WORKERS = 4096  # --workers: beyond this, a typing error rather than a plan


@dataclass(frozen=True)
class Config:
    command: tuple[str, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    paths: tuple[PathSpec, ...] = ()
    dir: Optional[str] = None
    pid_file: Optional[str] = None
    status_file: Optional[str] = None
    envdir: Optional[str] = None
    log_file: Optional[str] = None
    daemonize: bool = False
    backlog: int = socket.SOMAXCONN
    policy: Policy = field(default_factory=Policy)
    timeout: float = 60.0  # --restart / --stop deadline
    listen_fds: bool = False  # --listen-fds: also systemd's LISTEN_FDS protocol to children
    user: Optional[Identity] = None  # --user / --group: what the workers run as


def _check_parent(option: str, value: str) -> None:
    """A file we are going to create needs a name and an existing directory."""
    if not value:
        raise ConfigError(f"{option}=: empty path")
    parent = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(parent):
        raise ConfigError(f"{option}={value}: directory {parent} does not exist")


def _check_file(option: str, value: str) -> None:
    """A file we write: an existing directory, and not a directory itself."""
    _check_parent(option, value)
    if os.path.isdir(value):
        raise ConfigError(f"{option}={value}: is a directory")


def _truthy(raw: str) -> bool:
    return raw.strip() not in ("", "0")


def _which(prog: str, path: str) -> Optional[str]:
    """``shutil.which`` for a bare name: shutil would load bz2, lzma and more into
    the starter, a process that runs for months, for this one lookup."""
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory, prog)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def check_command(
    command: tuple[str, ...], directory: Optional[str], env: Mapping[str, str]
) -> None:
    """Refuse a command that cannot be run, before anything is started."""
    prog = command[0]
    if "/" in prog:
        path = prog if os.path.isabs(prog) or directory is None else os.path.join(directory, prog)
        if not os.path.exists(path):
            raise ConfigError(f"command {prog!r}: no such file")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise ConfigError(f"command {prog!r}: not an executable file")
        return
    if _which(prog, env.get("PATH", os.defpath)) is None:
        raise ConfigError(f"command {prog!r}: not found in PATH")


def _fd_limits(options: Mapping[str, Any]) -> tuple[Optional[int], Optional[float]]:
    """--max-open-files and --max-fd-fraction, each None when not given."""
    mof_raw = option_value(options, "max_open_files")
    mff_raw = option_value(options, "max_fd_fraction")
    try:
        mof = None if mof_raw is None else parse_count(mof_raw, minimum=1)
    except SpecError as exc:
        raise ConfigError(f"--max-open-files={mof_raw}: {exc}") from None
    try:
        mff = None if mff_raw is None else parse_fraction(mff_raw)
    except SpecError as exc:
        raise ConfigError(f"--max-fd-fraction={mff_raw}: {exc}") from None
    return mof, mff


def _health_check_interval(options: Mapping[str, Any]) -> tuple[str, Any]:
    """The option that sets the interval and its raw value: --health-check-interval
    or its old name --memory-check-interval, not both."""
    new, old = option_value(options, "health_check_interval"), option_value(
        options, "memory_check_interval"
    )
    if new is not None and old is not None:
        raise ConfigError(
            f"--memory-check-interval={old}: the old name of --health-check-interval, "
            "which is given too; keep one"
        )
    if old is not None:
        return "--memory-check-interval", old
    return "--health-check-interval", new


def _ports(values: Any, listen_fds: bool) -> list[PortSpec]:
    ports = []
    for raw in values:
        try:
            ports.append(parse_port(str(raw)))
        except SpecError as exc:
            raise ConfigError(f"--port={raw}: {exc}") from None
    for i, p in enumerate(ports):
        try:
            check_fd_collisions(ports[: i + 1])  # so the message names the second asker
        except SpecError as exc:
            raise ConfigError(f"--port={p.raw}: {exc}") from None
        if p.fd in (1, 2):
            raise ConfigError(
                f"--port={p.raw}: fd {p.fd} is the starter's "
                f"{'stdout' if p.fd == 1 else 'stderr'}; choose 0 or 3 and up"
            )
        if listen_fds and p.fd is not None:
            raise ConfigError(
                f"--port={p.raw}: =FD cannot be combined with --listen-fds "
                "(it puts the sockets on fds 3, 4, ... in order)"
            )
    return ports


def _paths(values: Any) -> list[PathSpec]:
    paths = []
    for raw in values:
        path = str(raw)
        try:
            spec = parse_path(path)
        except SpecError as exc:
            raise ConfigError(f"--path={path}: {exc}") from None
        _check_parent("--path", path)
        if os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"--path={path}: exists and is not a socket; refusing to replace it")
        paths.append(spec)
    return paths


def _no_duplicates(ports: list[PortSpec], paths: list[PathSpec]) -> None:
    """The message names the second asker: check ever longer prefixes."""
    for i, p in enumerate(ports):
        try:
            check_duplicates(ports[: i + 1], [])
        except SpecError as exc:
            raise ConfigError(f"--port={p.raw}: {exc}") from None
    for i, q in enumerate(paths):
        try:
            check_duplicates(ports, paths[: i + 1])
        except SpecError as exc:
            raise ConfigError(f"--path={q.path}: {exc}") from None


def _no_nul(options: Mapping[str, Any]) -> None:
    """A NUL (possible in a config file) or a lone surrogate fits no file name,
    argument or variable: refuse it here rather than fail in a system call."""
    for name, value in options.items():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if not isinstance(item, str):
                continue
            try:
                os.fsencode(item)
            except UnicodeError:
                ok = False
            else:
                ok = "\0" not in item
            if not ok:
                flag = "command" if name == "command" else "--" + name.replace("_", "-")
                # Only a config file can hold one; it shows the value quoted.
                raise ConfigError(f"{flag}={item}: not a valid string (NUL or lone surrogate)")


def build(options: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Validate raw option values (strings, lists, flags) into the starter's Config.

    The client commands (``--restart`` ...) take theirs from
    ``control.client_options`` instead: they check only what they need.
    """
    _no_nul(options)
    pid_file = option_value(options, "pid_file")
    status_file = option_value(options, "status_file")
    timeout = seconds_value("--timeout", option_value(options, "timeout"), 60, allow_zero=False)

    command = tuple(options.get("command") or ())
    if not command:
        raise ConfigError("server program not specified (start_server [options] -- prog args...)")

    listen_fds = bool(options.get("listen_fds"))
    ports = _ports(options.get("port") or (), listen_fds)
    paths = _paths(options.get("path") or ())
    _no_duplicates(ports, paths)

    directory = option_value(options, "dir")
    if directory is not None and not os.path.isdir(directory):
        raise ConfigError(f"--dir={directory}: not a directory")

    signals = {}
    for name in ("signal_on_hup", "signal_on_term"):
        raw = option_value(options, name)
        raw = "TERM" if raw is None else raw
        try:
            signals[name] = parse_signal(str(raw))
        except SpecError as exc:
            raise ConfigError(f"--{name.replace('_', '-')}={raw}: {exc}") from None

    interval = seconds_value("--interval", option_value(options, "interval"), 1)

    envdir_raw = option_value(options, "envdir")
    envdir_src = "--envdir"
    if envdir_raw is None and environ.get("ENVDIR"):
        envdir_raw, envdir_src = environ["ENVDIR"], "ENVDIR"
    if envdir_raw is not None and not os.path.isdir(envdir_raw):
        raise ConfigError(f"{envdir_src}={envdir_raw}: not a directory")

    ear_flag = options.get("enable_auto_restart")  # None: not given, so the variable decides
    if ear_flag is None:
        auto_restart = _truthy(environ.get("ENABLE_AUTO_RESTART", ""))
    else:
        auto_restart = bool(ear_flag)
    ari_raw = option_value(options, "auto_restart_interval")
    ari_name = "--auto-restart-interval"
    if ari_raw is None and environ.get("AUTO_RESTART_INTERVAL"):
        ari_raw, ari_name = environ["AUTO_RESTART_INTERVAL"], "AUTO_RESTART_INTERVAL"
    auto_restart_interval = seconds_value(ari_name, ari_raw, 360, allow_zero=False)
    kod_raw = option_value(options, "kill_old_delay")
    kod_name = "--kill-old-delay"
    if kod_raw is None and environ.get("KILL_OLD_DELAY") not in (None, ""):
        kod_raw, kod_name = environ["KILL_OLD_DELAY"], "KILL_OLD_DELAY"
    kill_old_delay = None if kod_raw is None else seconds_value(kod_name, kod_raw, 0)

    backlog_raw = option_value(options, "backlog")
    try:
        backlog = socket.SOMAXCONN if backlog_raw is None else parse_count(backlog_raw, minimum=1)
    except SpecError as exc:
        raise ConfigError(f"--backlog={backlog_raw}: {exc}") from None

    ready_timeout = seconds_value(
        "--ready-timeout", option_value(options, "ready_timeout"), 60, allow_zero=False
    )
    st_raw = option_value(options, "stop_timeout")
    stop_timeout = None if st_raw is None else seconds_value("--stop-timeout", st_raw, 0)
    backoff_max = seconds_value("--backoff-max", option_value(options, "backoff_max"), 30)
    min_uptime = seconds_value("--min-uptime", option_value(options, "min_uptime"), 1)
    workers_raw = option_value(options, "workers")
    try:
        workers = (
            1 if workers_raw is None else parse_count(workers_raw, minimum=1, maximum=MAX_WORKERS)
        )
    except SpecError as exc:
        raise ConfigError(f"--workers={workers_raw}: {exc}") from None
    jitter = seconds_value("--auto-restart-jitter", option_value(options, "auto_restart_jitter"), 0)
    mem_raw = option_value(options, "max_memory")
    try:
        max_memory = None if mem_raw is None else parse_size(mem_raw)
    except SpecError as exc:
        raise ConfigError(f"--max-memory={mem_raw}: {exc}") from None
    max_open_files, max_fd_fraction = _fd_limits(options)
    health_check_interval = seconds_value(
        *_health_check_interval(options), HEALTH_CHECK_INTERVAL, allow_zero=False
    )

    log_file = option_value(options, "log_file")
    daemonize = bool(options.get("daemonize"))
    if daemonize and not log_file:
        raise ConfigError("--daemonize: requires --log-file")
    if log_file is not None and not log_file.lstrip().startswith("|"):
        _check_file("--log-file", log_file)
    for name, value in (("--pid-file", pid_file), ("--status-file", status_file)):
        if value is not None:
            _check_file(name, value)

    user = resolve_identity(option_value(options, "user"), option_value(options, "group"))
    check_command(command, directory, environ)

    policy = Policy(
        interval=interval,
        signal_on_hup=signals["signal_on_hup"],
        signal_on_term=signals["signal_on_term"],
        kill_old_delay=kill_old_delay,
        auto_restart=auto_restart,
        auto_restart_interval=auto_restart_interval,
        wait_ready=bool(options.get("wait_ready")),
        ready_timeout=ready_timeout,
        stop_timeout=stop_timeout,
        backoff_max=backoff_max,
        min_uptime=min_uptime,
        workers=workers,
        auto_restart_jitter=jitter,
        max_memory=max_memory,
        max_open_files=max_open_files,
        max_fd_fraction=max_fd_fraction,
        health_check_interval=health_check_interval,
    )
    return Config(
        command=command,
        ports=tuple(ports),
        paths=tuple(paths),
        dir=directory,
        pid_file=pid_file,
        status_file=status_file,
        envdir=envdir_raw,
        log_file=log_file,
        daemonize=daemonize,
        backlog=backlog,
        policy=policy,
        timeout=timeout,
        listen_fds=listen_fds,
        user=user,
    )
