"""Every option of the command line, parsed by click into a Config.

``start_server.cli`` is the entry point; it comes here for every command line
but the simplest client calls. Errors are one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Optional, Union

import click

from . import __version__
from .cli import fail
from .helptext import HelpCommand, version_message
from .policy import HEALTH_CHECK_INTERVAL

if TYPE_CHECKING:
    from .config import Config
    from .configfile import FileConfig
    from .control import ClientOptions

CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "allow_interspersed_args": False,  # everything after the program is its own
    "max_content_width": 100,
}


@click.command(cls=HelpCommand, context_settings=CONTEXT)
@click.option(
    "--port",
    multiple=True,
    metavar="SPEC",
    help="Bind PORT, HOST:PORT or [V6]:PORT; 'u' before the port for UDP; =FD to "
    "place the socket on that fd. Repeatable.",
)
@click.option(
    "--path", multiple=True, metavar="PATH", help="Bind a unix stream socket. Repeatable."
)
@click.option("--dir", metavar="DIR", help="Working directory of the server program.")
@click.option(
    "--user",
    metavar="NAME|UID",
    help="Run the server program as this user (its groups, HOME, USER, LOGNAME); "
    "the starter stays root.",
)
@click.option(
    "--group",
    metavar="NAME|GID",
    help="Run the server program with this primary group (default: the --user's).",
)
@click.option(
    "--interval",
    metavar="SECONDS",
    help="A generation alive this long has started (default 1; fractions allowed).",
)
@click.option(
    "--signal-on-hup", metavar="SIG", help="Signal for old generations on a restart (default TERM)."
)
@click.option(
    "--signal-on-term",
    metavar="SIG",
    help="Signal for all generations when the starter gets TERM (default TERM).",
)
@click.option("--pid-file", metavar="FILE", help="Write, lock and hold the starter's pid file.")
@click.option("--status-file", metavar="FILE", help="Write GEN:PID lines of live generations.")
@click.option(
    "--envdir", metavar="DIR", help="daemontools envdir, re-read before every spawn (env ENVDIR)."
)
@click.option(
    "--log-file",
    metavar="FILE|'| CMD'",
    help="Send stdout and stderr to FILE (appended) or into CMD; USR1 reopens FILE.",
)
@click.option("--daemonize", is_flag=True, help="Detach (needs --log-file).")
@click.option(
    "--enable-auto-restart",
    is_flag=True,
    help="Restart every --auto-restart-interval seconds (env ENABLE_AUTO_RESTART).",
)
@click.option(
    "--auto-restart-interval", metavar="SECONDS", help="Default 360 (env AUTO_RESTART_INTERVAL)."
)
@click.option(
    "--kill-old-delay",
    metavar="SECONDS",
    help="Wait this long after a start before signalling old generations "
    "(default 5 with auto-restart, else 0; env KILL_OLD_DELAY).",
)
@click.option("--backlog", metavar="N", help="listen(2) backlog (default SOMAXCONN).")
@click.option(
    "--wait-ready",
    is_flag=True,
    help="A generation has started only when it sends READY=1 to NOTIFY_SOCKET.",
)
@click.option(
    "--listen-fds",
    is_flag=True,
    help="Also pass the sockets the systemd way: fds 3, 4, ... in SERVER_STARTER_PORT "
    "order, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES (gunicorn without --bind).",
)
@click.option(
    "--ready-timeout",
    metavar="SECONDS",
    help="With --wait-ready: stop a generation not ready by then (default 60).",
)
@click.option(
    "--stop-timeout",
    metavar="SECONDS",
    help="SIGKILL a signalled generation's process group after this long (default: wait forever).",
)
@click.option(
    "--backoff-max",
    metavar="SECONDS",
    help="Longest delay between failed start attempts (default 30).",
)
@click.option(
    "--min-uptime",
    metavar="SECONDS",
    help="A started worker that ran this long and then died is respawned at once; "
    "an earlier death counts for the crash backoff (default 1).",
)
@click.option(
    "--workers",
    metavar="N",
    help="Run N copies of the command per generation (SERVER_STARTER_WORKER=0..N-1).",
)
@click.option(
    "--auto-restart-jitter",
    metavar="SECONDS",
    help="Spread each auto-restart deadline randomly by up to this much (default 0).",
)
@click.option(
    "--max-memory",
    metavar="SIZE",
    help="Restart a generation (a worker, with --workers) whose process tree's PSS stays "
    "over SIZE (400M, 1.5G, bytes) on two checks in a row.",
)
@click.option(
    "--max-open-files",
    metavar="N",
    help="Restart a generation (a worker, with --workers) whose process tree holds more "
    "than N open fds on two checks in a row (its listening sockets and fds 0-2 aside).",
)
@click.option(
    "--max-fd-fraction",
    metavar="F",
    help="The same, with the limit a fraction (0 < F <= 1) of the worker's own "
    "RLIMIT_NOFILE; with --max-open-files, the lower limit applies.",
)
@click.option(
    "--health-check-interval",
    metavar="SECONDS",
    help="How often --max-memory and the fd limits are checked "
    f"(default {HEALTH_CHECK_INTERVAL:g}).",
)
@click.option(
    "--memory-check-interval",
    metavar="SECONDS",
    help="The old name of --health-check-interval.",
)
@click.option(
    "--restart",
    "mode",
    flag_value="restart",
    help="Client: HUP the running starter, wait until the new generation took over "
    "(needs --pid-file, --status-file).",
)
@click.option(
    "--stop",
    "mode",
    flag_value="stop",
    help="Client: TERM the running starter, wait until it exited (needs --pid-file).",
)
@click.option(
    "--status",
    "mode",
    flag_value="status",
    help="Client: show the generations of the running starter "
    "(needs --pid-file, --status-file).",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
@click.option(
    "--watch",
    is_flag=True,
    help="With --status: show it live, redrawn on every change, until q or Ctrl-C "
    "(one line per change when stdout is not a terminal).",
)
@click.option("--timeout", metavar="SECONDS", help="Deadline of --restart and --stop (default 60).")
@click.option(
    "--config",
    metavar="FILE",
    help="Read options from a YAML file: long options as keys, the program as "
    "'command: [prog, args...]'. The command line wins over the file, the file over "
    "environment variables.",
)
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
    from .config import build
    from .control import client_options
    from .values import ConfigError

    source: Optional[FileConfig] = None
    try:
        options, source = _with_config_file(options)
        config: Union[Config, ClientOptions] = (
            client_options(options, "status" if mode == "watch" else mode)
            if mode
            else build(options, os.environ)
        )
    except ConfigError as exc:
        fail(str(exc) if source is None else source.explain(str(exc)), 2)
    return mode or "run", config, as_json, options


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
    kinds = {}
    for param in command.params:
        if (
            isinstance(param, click.Option)
            and param.expose_value
            and param.name not in (None, "mode", "as_json", "watch", "config")  # no settings
        ):
            kinds[str(param.name)] = (
                "list" if param.multiple else "flag" if param.is_flag else "value"
            )
    return kinds


def parse(args: list[str]) -> tuple[str, Union[Config, ClientOptions], bool, dict[str, Any]]:
    """The mode (``run``, ``restart``, ``stop``, ``status``), the Config,
    ``--json`` and the raw options it was built from (``--config`` merged in);
    usage errors, ``--help`` and ``--version`` exit here."""
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
