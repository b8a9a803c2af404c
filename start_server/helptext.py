"""``--help`` for people, ``--version``, and the option reference they share.

The options are the table's (:mod:`start_server.optiontable`), made into
click's parameters in :mod:`start_server.options`; this module shows them in
the table's sections, adds the examples and says where the docs are. The
reference in docs/options.md and the man page are generated from the same
(:mod:`start_server.reference`), so the three never disagree. Imported only
where click already is.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .optiontable import COMMAND, sections

COMPATIBLE_WITH = "Server::Starter 0.35"

# Each option (by its long name) in exactly one section, in this order: the
# table's sections, then click's own options. A unit test holds every option to it.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    *sections(),
    ("Information", ("--help", "--version")),
)
OTHER = "Other options"
TERM_WIDTH = 24  # the option column of --help  # where an option missing from SECTIONS still shows

# The program after the options: not a click option, but a row of its section.
PROGRAM_ROW = ("-- PROGRAM [ARGS]...", "The server program to run; everything after -- is its own.")
PROGRAM_SECTION = COMMAND

USAGE = (
    "start_server [OPTIONS] -- PROGRAM [ARGS]...",
    "start_server --restart|--stop|--status [OPTIONS]",
)

DESCRIPTION = (
    "A superdaemon for zero-downtime hot deploys: it binds the sockets once, keeps "
    "them open, and runs PROGRAM as generation 1, 2, 3 ... with the sockets inherited "
    "(SERVER_STARTER_PORT names them). On HUP or --restart a new generation starts on "
    "the same sockets; once it is up, the old one is told to finish and exit."
)

# (what it does, the command's lines: one command, continued with a backslash).
# Each runs as written in a checkout after the README's first command and
# `. .venv/bin/activate` (tests/integration/test_runnable_docs.py runs 2 and 3).
EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Run the example app on port 8080, ready when it says so:",
        ("start_server --port 127.0.0.1:8080 --wait-ready -- python3 examples/hello_app.py",),
    ),
    (
        "The same in the background, with the files the clients need and bounded stops:",
        (
            "start_server --port 127.0.0.1:8080 --wait-ready --stop-timeout 30 \\",
            "    --pid-file app.pid --status-file app.status --log-file app.log --daemonize \\",
            "    -- python3 examples/hello_app.py",
        ),
    ),
    (
        "Deploy: restart, and wait until the new generation took over:",
        ("start_server --restart --pid-file app.pid --status-file app.status",),
    ),
    (
        "Two workers more (until the starter restarts), then restart worker 1 alone:",
        (
            "start_server --scale +2 --pid-file app.pid --status-file app.status",
            "start_server --restart --worker 1 --pid-file app.pid --status-file app.status",
        ),
    ),
    ("Everything from a file:", ("start_server --config examples/start_server.yaml",)),
)

MORE = (
    "More: man start_server; in the source, README.md and docs/ (options.md, "
    "operations.md, apps.md for gunicorn, uvicorn and other servers, compatibility.md)."
)


def version_message() -> str:
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"start_server {__version__} (Python {python}, compatible with {COMPATIBLE_WITH})"


def long_name(param: click.Parameter) -> str:
    """The option's long name (``--port``), or its name for an argument."""
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])


def sectioned(
    command: click.Command, ctx: click.Context
) -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(section, [(option and metavar, help), ...]), ...]`` in SECTIONS order."""
    records: dict[str, tuple[str, str]] = {}
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):
            continue  # the program: PROGRAM_ROW says it
        record = param.get_help_record(ctx)
        if record is not None:
            records[long_name(param)] = record
    result = []
    for title, names in SECTIONS:
        rows = [records.pop(name) for name in names if name in records]
        if title == PROGRAM_SECTION:
            rows.insert(0, PROGRAM_ROW)
        result.append((title, rows))
    if records:
        result.append((OTHER, list(records.values())))
    return result


class HelpCommand(click.Command):
    """click's command with the help in sections, examples and a pointer to the docs."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Program and arguments apart: click 8.1 (the last for Python 3.9) writes
        # nothing for a usage line whose arguments are empty.
        for line, prefix in zip(USAGE, ("Usage: ", "   or: ")):
            prog, _, args = line.partition(" ")
            formatter.write_usage(prog, args, prefix=prefix)

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(DESCRIPTION)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections = sectioned(self, ctx)
        # One column width for all sections; longer names get a line of their own.
        width = min(max(len(term) for _, rows in sections for term, _ in rows), TERM_WIDTH)
        for title, rows in sections:
            with formatter.section(title):
                padded = [(term.ljust(width), text) for term, text in rows]
                formatter.write_dl(padded, col_max=width)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Examples"):
            for what, example in EXAMPLES:
                formatter.write_text(what)
                with formatter.indentation():
                    for line in example:
                        formatter.write(f"{formatter.current_indent * ' '}{line}\n")
        formatter.write_paragraph()
        formatter.write_text(MORE)
