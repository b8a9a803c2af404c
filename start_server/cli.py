"""The entry point: command line -> Config -> run, restart, stop or status.

Every error is one line on stderr, ``start_server: <option>=<value>: <why>``:
exit 2 for bad input (usage), 1 when the system says no (port in use, a
locked pid file, a restart that failed).

The option table and its parser (click) are in :mod:`start_server.options`;
the lean process of the re-exec (reexec.py) is handed the options read there
and enters at ``main_lean``.
"""

from __future__ import annotations

import os
import sys

from . import signals  # first: held from the first instruction (signal is built in)
from .values import fail

TYPE_CHECKING = False  # typing itself costs the client milliseconds at every deploy
if TYPE_CHECKING:
    from typing import Any, NoReturn, Optional, Union

    from .config import Config
    from .control import ClientOptions


def dispatch(mode: str, config: Union[Config, ClientOptions], as_json: bool,
             options: Optional[dict[str, Any]] = None) -> int:
    """Run the starter (``mode`` ``run``) or a client command; errors of the
    system (not of the input) are one line and exit 1."""
    from . import control
    from .files import FileError

    try:
        if isinstance(config, control.ClientOptions):
            if config.request is not None:
                from .asking import ask

                return ask(config)
            if mode == "restart":
                return control.restart(config)
            if mode == "stop":
                return control.stop(config)
            if mode == "upgrade":
                return control.upgrade(config)
            if mode == "watch":
                from .watch import watch

                return watch(config, as_json)
            return control.status(config, as_json)
        return _serve(config, options)
    except (FileError, control.ControlError) as exc:
        fail(str(exc), 1)


def _serve(config: Config, options: Optional[dict[str, Any]]) -> int:
    from .daemonize import LogError
    from .loop import serve
    from .sockets import BindError

    try:
        return serve(config, os.environ, options)
    except (BindError, LogError) as exc:
        fail(str(exc), 1)


def open_standard_fds() -> None:
    """/dev/null on any of fds 0, 1 and 2 that was closed when we were started
    (``>&-``). Otherwise the first socket bound takes that number, and the log,
    put on fds 1 and 2 later, closes it: no generation could ever serve."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)  # to the lean re-exec and the workers
        if getattr(sys, name) is None:  # Python leaves None for an fd closed at its start
            setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115


def main(argv: Optional[list[str]] = None) -> NoReturn:
    """The entry point. Run as a program (``argv`` None), the starter's signals
    are held back from here until its loop runs, or a client's mode is known."""
    if argv is None:
        signals.block()
        open_standard_fds()
    args = sys.argv[1:] if argv is None else list(argv)
    from .options import parse

    mode, config, as_json, options = parse(args)
    if mode == "run" and argv is None:
        from .reexec import exec_lean

        exec_lean(args, options)  # returns only if it cannot
    if mode != "run":
        signals.unblock()
    # Run unlean (no re-exec possible), it cannot upgrade itself either.
    sys.exit(dispatch(mode, config, as_json))


def main_lean() -> NoReturn:
    """The lean process (starter.py): it serves the options handed over
    (``--hand-over=FD`` first, reexec.py), checked again as the full process
    checked them; without a hand-over it is a full process like any other."""
    signals.block()  # held across the exec already; so when started by hand too
    from .reexec import is_lean

    args = sys.argv[1:]
    if not is_lean(args):
        main()
    from .config import build
    from .handover import HandOverError, read
    from .reexec import KIND, options_of
    from .values import ConfigError

    try:
        doc = read(args[0], (KIND, "state"))
        options = options_of(doc, args[0])
        config = build(options, os.environ)
        if doc["kind"] == "state":  # an upgrade (upgrade.py)
            from .upgrade import resume

            resumed = resume(doc, config, check_only=args[1:] == ["--check"])
            if resumed is None:
                sys.exit(0)
            from .loop import resume_serving

            sys.exit(resume_serving(config, os.environ, doc, *resumed))
    except (HandOverError, ConfigError, KeyError, TypeError, ValueError) as exc:
        fail(str(exc) or type(exc).__name__, 2)
    sys.exit(dispatch("run", config, False, options))
