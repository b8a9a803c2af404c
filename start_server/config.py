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
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from .identity import Identity
from .identity import resolve as resolve_identity
from .optiontable import FLAG, LIST, TABLE, Option, default
from .policy import Policy
from .spec import PathSpec, PortSpec, check_duplicates, check_fd_collisions
from .values import ConfigError, SpecError, option_value

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional


@dataclass(frozen=True)
class Config:
    """What the starter runs with; the defaults are the option table's."""

    command: tuple[str, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    paths: tuple[PathSpec, ...] = ()
    dir: Optional[str] = default("dir")
    pid_file: Optional[str] = default("pid_file")
    status_file: Optional[str] = default("status_file")
    envdir: Optional[str] = default("envdir")
    log_file: Optional[str] = default("log_file")
    daemonize: bool = default("daemonize")
    backlog: int = default("backlog")
    policy: Policy = field(default_factory=Policy)
    timeout: float = default("timeout")  # --restart / --stop deadline
    # --listen-fds: also systemd's LISTEN_FDS protocol to children
    listen_fds: bool = default("listen_fds")
    user: Optional[Identity] = None  # --user / --group: what the workers run as


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
            raise _command_error(prog, "no such file")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise _command_error(prog, "not an executable file")
        return
    if _which(prog, env.get("PATH", os.defpath)) is None:
        raise _command_error(prog, "not found in PATH")


def _command_error(prog: str, reason: str) -> ConfigError:
    return ConfigError(f"command {prog!r}: {reason}", "command", prog, reason)


def _raw(opt: Option, options: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, Any]:
    """Where the option's value comes from (``--name``, its old name or its
    variable) and the raw value there; None when nowhere (the default)."""
    raw = option_value(options, opt.name)
    for old in (o for o in TABLE if o.alias_of == opt.name):
        old_raw = option_value(options, old.name)
        if old_raw is not None and raw is not None:
            raise ConfigError.of(
                old.flag, old_raw, f"the old name of {opt.flag}, which is given too; keep one"
            )
        if old_raw is not None:
            return old.flag, old_raw
    if raw is None and opt.env is not None and environ.get(opt.env):
        return opt.env, environ[opt.env]
    return opt.flag, raw


def _parse(source: str, opt: Option, raw: Any) -> Any:
    assert opt.parse is not None
    try:
        return opt.parse(raw)
    except SpecError as exc:
        raise ConfigError.of(source, raw, str(exc)) from None


def _value(opt: Option, options: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """One option's value: parsed from the first source that has it, else the default.
    A flag is None when not given, so an explicit false beats the variable."""
    source, raw = _raw(opt, options, environ)
    if raw is None:
        return opt.default
    if opt.kind == LIST:
        return tuple(_parse(source, opt, str(item)) for item in raw)
    if opt.kind == FLAG and isinstance(raw, bool):
        return raw
    return _parse(source, opt, raw)


def _ports(ports: tuple[PortSpec, ...], listen_fds: bool) -> None:
    for i, p in enumerate(ports):
        try:
            check_fd_collisions(list(ports[: i + 1]))  # so the message names the second asker
        except SpecError as exc:
            raise ConfigError.of("--port", p.raw, str(exc)) from None
        if p.fd in (1, 2):
            raise ConfigError.of(
                "--port", p.raw,
                f"fd {p.fd} is the starter's {'stdout' if p.fd == 1 else 'stderr'}; "
                "choose 0 or 3 and up",
            )
        if listen_fds and p.fd is not None:
            raise ConfigError.of(
                "--port", p.raw,
                "=FD cannot be combined with --listen-fds (it puts the sockets on fds 3, 4, "
                "... in order)",
            )


def _no_duplicates(ports: tuple[PortSpec, ...], paths: tuple[PathSpec, ...]) -> None:
    """The message names the second asker: check ever longer prefixes."""
    for i, p in enumerate(ports):
        try:
            check_duplicates(list(ports[: i + 1]), [])
        except SpecError as exc:
            raise ConfigError.of("--port", p.raw, str(exc)) from None
    for i, q in enumerate(paths):
        try:
            check_duplicates(list(ports), list(paths[: i + 1]))
        except SpecError as exc:
            raise ConfigError.of("--path", q.path, str(exc)) from None


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
                raise ConfigError.of(flag, item, "not a valid string (NUL or lone surrogate)")


def build(options: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """Validate raw option values (strings, lists, flags) into the starter's Config:
    each option by its row of the table, then the rules between options.

    The client commands (``--restart`` ...) take theirs from
    ``control.client_options`` instead: they check only what they need.
    """
    _no_nul(options)
    command = tuple(options.get("command") or ())
    if not command:
        raise ConfigError(
            "server program not specified (start_server [options] -- prog args...)", "command"
        )
    values = {o.field: _value(o, options, environ) for o in TABLE if o.parse and o.field}
    _ports(values["ports"], values["listen_fds"])
    _no_duplicates(values["ports"], values["paths"])
    if values["daemonize"] and not values["log_file"]:
        raise ConfigError.of("--daemonize", None, "requires --log-file")
    user = resolve_identity(option_value(options, "user"), option_value(options, "group"))
    check_command(command, values["dir"], environ)
    in_policy = {f.name for f in fields(Policy)}
    policy = Policy(**{k: v for k, v in values.items() if k in in_policy})
    rest = {k: v for k, v in values.items() if k not in in_policy}
    return Config(command=command, policy=policy, user=user, **rest)
