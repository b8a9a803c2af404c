"""The entry point: command line -> Config -> run, restart, stop or status.

Every error is one line on stderr, ``start_server: <option>=<value>: <why>``:
exit 2 for bad input (usage), 1 when the system says no (port in use, a
locked pid file, a restart that failed).

The option table and its parser (click) are in :mod:`start_server.options`.
A deploy runs ``start_server --restart --pid-file F --status-file F`` on every
release, and importing click costs about half of that client's start-up, so
exactly that shape of command line (the client options alone, each once) is
read here without it; anything else, unusual or wrong, goes to click.
"""

from __future__ import annotations

import os
import sys

from . import signals  # first: held from the first instruction (signal is built in)
from .values import fail, one_line  # noqa: F401  (one_line: for the tests)

TYPE_CHECKING = False  # typing itself costs the client milliseconds at every deploy
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional, Union

    from .config import Config
    from .control import ClientOptions

CLIENT_MODES = {"--restart": "restart", "--stop": "stop", "--status": "status"}
CLIENT_VALUES = {"--pid-file": "pid_file", "--status-file": "status_file", "--timeout": "timeout"}


def client_args(args: list[str]) -> Optional[tuple[str, dict[str, Any], bool]]:
    """``(mode, options, as_json)`` when ``args`` are a plain client call, else None.

    Plain: one of ``--restart``/``--stop``/``--status``, ``--json`` with
    ``--status`` only, and ``--pid-file``, ``--status-file``, ``--timeout``
    (``--opt VALUE`` or ``--opt=VALUE``), each at most once, values not starting
    with ``-``. click reads such a line to the same options (a unit test holds
    the two to it).
    """
    mode: Optional[str] = None
    as_json = False
    options: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in CLIENT_MODES:
            if mode is not None:
                return None
            mode = CLIENT_MODES[arg]
            continue
        if arg == "--json" and not as_json:
            as_json = True
            continue
        name, eq, value = arg.partition("=")
        if name not in CLIENT_VALUES or CLIENT_VALUES[name] in options:
            return None
        if not eq:
            if i == len(args):
                return None
            value = args[i]
            i += 1
        if value.startswith("-"):
            return None
        options[CLIENT_VALUES[name]] = value
    if mode is None or (as_json and mode != "status"):
        return None
    return mode, options, as_json


def dispatch(mode: str, config: Union[Config, ClientOptions], as_json: bool) -> int:
    """Run the starter (``mode`` ``run``) or a client command; errors of the
    system (not of the input) are one line and exit 1."""
    from . import control
    from .files import FileError

    try:
        if isinstance(config, control.ClientOptions):
            if mode == "restart":
                return control.restart(config)
            if mode == "stop":
                return control.stop(config)
            if mode == "watch":
                from .watch import watch

                return watch(config, as_json)
            return control.status(config, as_json)
        return _serve(config)
    except (FileError, control.ControlError) as exc:
        fail(str(exc), 1)


def _serve(config: Config) -> int:
    from .daemonize import LogError
    from .loop import serve
    from .sockets import BindError

    try:
        return serve(config, os.environ)
    except (BindError, LogError) as exc:
        fail(str(exc), 1)


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """The entry point. Run as a program (``argv`` None), the starter's signals
    are held back from here until its loop runs, or a client's mode is known."""
    if argv is None:
        signals.block()
    args = sys.argv[1:] if argv is None else list(argv)
    read = _read_without_click(args)
    if read is None:
        from .options import parse

        mode, config, as_json, options = parse(args)
        if mode == "run" and argv is None:
            from .reexec import exec_lean

            exec_lean(args, options)  # returns only if it cannot
        read = mode, config, as_json
    if read[0] != "run":
        signals.unblock()
    sys.exit(dispatch(*read))


def _read_without_click(
    args: list[str],
) -> Optional[tuple[str, Union[Config, ClientOptions], bool]]:
    """The options the lean re-exec was handed, or a plain client line; None: click's."""
    from .reexec import HandOverError, take_options
    from .values import ConfigError

    try:
        handed = take_options()
        if handed is not None:
            from .config import build

            return "run", build(handed, os.environ), False
        quick = client_args(args)
        if quick is None:
            return None
        from .control import client_options

        mode, options, as_json = quick
        return mode, client_options(options, mode), as_json
    except (HandOverError, ConfigError) as exc:
        fail(str(exc), 2)
