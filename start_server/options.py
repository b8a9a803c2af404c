"""The command line, parsed by click into a Config.

click's parameters are made from the option table (optiontable.py).

``start_server.cli`` is the entry point; it comes here for every command line
but the simplest client calls. Errors are one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Union

import click

from . import __version__
from .helptext import HelpCommand, version_message
from .optiontable import FLAG, LIST, MODE, TABLE, Option, file_kinds
from .values import fail

if TYPE_CHECKING:
    from .config import Config
    from .configfile import FileConfig
    from .control import ClientOptions

CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "allow_interspersed_args": False,  # everything after the program is its own
    "max_content_width": 100,
}


def _parameter(opt: Option) -> click.Option:
    """click's parameter for a row of the table; values stay raw strings (``build``
    parses them, whatever their source)."""
    if opt.kind == MODE:
        return click.Option([opt.flag, opt.dest], flag_value=opt.name, help=opt.help_text)
    if opt.kind == FLAG:
        return click.Option([opt.flag, opt.dest], is_flag=True, help=opt.help_text)
    if opt.bare is not None:  # ``--rolling`` or ``--rolling=K``
        return click.Option(
            [opt.flag, opt.dest], is_flag=False, flag_value=opt.bare,
            metavar=f"[{opt.metavar}]", help=opt.help_text,
        )
    return click.Option(
        [opt.flag, opt.dest], multiple=opt.kind == LIST, metavar=opt.metavar, help=opt.help_text
    )


@click.command(cls=HelpCommand, context_settings=CONTEXT)
@click.version_option(__version__, "--version", message=version_message())
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(
    mode: Optional[str], as_json: bool, **options: Any
) -> tuple[str, Union[Config, ClientOptions], bool, dict[str, Any]]:
    """A superdaemon for hot-deploying server programs.

    start_server [options] -- server-prog server-arg1 ...
    """
    if options.pop("watch"):
        if mode != "status":
            fail("--watch: only with --status", 2)
        mode = "watch"
    mode, request = _request(mode, options.pop("scale"), options.pop("worker"))
    from .values import ConfigError

    source: Optional[FileConfig] = None
    try:
        options, source = _with_config_file(options)
        config: Union[Config, ClientOptions]
        if mode:  # a client: neither the starter's config nor its modules (socket, ctypes)
            from .control import client_options

            config = client_options(options, "status" if mode == "watch" else mode, request)
            if request is not None:
                from .asking import check_request

                check_request(*request)
        else:
            from .config import build

            config = build(options, os.environ)
    except ConfigError as exc:
        fail(str(exc) if source is None else source.explain(exc), 2)
    return mode or "run", config, as_json, options


def _request(mode: Optional[str], scale: Optional[str],
             worker: Optional[str]) -> tuple[Optional[str], Optional[tuple[str, str]]]:
    """The mode and the request with an argument: ``--scale`` is a client of its
    own, ``--worker`` goes with ``--restart`` only."""
    if scale is not None:
        if worker is not None:
            fail(f"--worker={worker}: only with --restart", 2)
        if mode is not None:
            fail(f"--scale: not with --{mode}", 2)
        return "scale", ("scale", scale)
    if worker is not None:
        if mode != "restart":
            fail(f"--worker={worker}: only with --restart", 2)
        return mode, ("worker", worker)
    return mode, None


# The table's options, before the program argument and --version.
command.params[:0] = [_parameter(opt) for opt in TABLE]


def _with_config_file(options: dict[str, Any]) -> tuple[dict[str, Any], Optional[FileConfig]]:
    """Options with ``--config FILE`` merged in, and the file (None without one).

    A flag left off the command line becomes None rather than False, so that
    ``build`` can tell "not given" (the environment decides) from an explicit
    ``false`` in the file (which beats the environment).
    """
    ctx = click.get_current_context()
    given = {
        name
        for name in options
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    }
    kinds = option_kinds()
    for name, kind in kinds.items():
        if kind == "flag" and name not in given:
            options[name] = None
    path = options.pop("config", None)
    if path is None:
        return options, None
    from .configfile import merge, read

    return merge(options, given, read(path, kinds))


def option_kinds() -> dict[str, str]:
    """The options a --config file may set: name -> ``list``, ``flag`` or ``value``."""
    return file_kinds()


def parse(args: list[str]) -> tuple[str, Union[Config, ClientOptions], bool, dict[str, Any]]:
    """The mode (``run``, ``restart``, ``stop``, ``status``), the Config,
    ``--json`` and the raw options it was built from (``--config`` merged in);
    usage errors, ``--help`` and ``--version`` exit here."""
    _negative_optional_values(args)
    try:
        result = command.main(args=args, prog_name="start_server", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.NoSuchOption as exc:
        # The culprit first, as in every other error line.
        close = sorted(exc.possibilities or ())
        hint = f"did you mean {' or '.join(close)}?" if close else "see --help"
        fail(f"{exc.option_name}: no such option ({hint})", 2)
    except click.UsageError as exc:
        fail(exc.format_message(), 2)
    except click.Abort:
        fail("aborted", 1)
    if not isinstance(result, tuple):  # --help, --version: click returns their exit code
        sys.exit(result or 0)
    return result


def _negative_optional_values(args: list[str]) -> None:
    """``--rolling=-1``: click takes a value that starts with ``-`` for the next
    option (an optional value is left off); name the option and the value instead."""
    from .values import SpecError

    for arg in args:
        if arg == "--":
            return
        for opt in TABLE:
            prefix = opt.flag + "=-"
            if opt.bare is not None and opt.parse is not None and arg.startswith(prefix):
                try:
                    opt.parse(arg[len(opt.flag) + 1:])
                except SpecError as exc:
                    fail(f"{arg}: {exc}", 2)
