"""The entry point's click-free reading of plain client calls agrees with click.

``start_server --restart --pid-file F --status-file F`` runs on every deploy,
so ``cli.client_args`` reads exactly that shape without importing click; any
other line goes to click. Each accepted line here is parsed both ways and must
give the same mode, options and ``--json``; each refused one must go to click.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from start_server.cli import client_args
from start_server.control import ClientOptions, client_options
from start_server.options import parse


def fields(c: object) -> tuple[object, ...]:
    assert isinstance(c, ClientOptions)
    return (c.pid_file, c.status_file, c.timeout)


@pytest.mark.parametrize(
    "argv",
    [
        ["--restart", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--pid-file=/r/p", "--status-file=/r/s", "--restart"],
        ["--restart", "--pid-file", "/r/p", "--status-file", "/r/s", "--timeout", "2.5"],
        ["--restart", "--timeout=7", "--pid-file=/r/p", "--status-file=/r/s"],
        ["--stop", "--pid-file", "/r/p"],
        ["--stop", "--pid-file", "/r/p", "--timeout", "3"],
        ["--status", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--status", "--json", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--json", "--status", "--pid-file=/r/p", "--status-file=/r/s"],
        ["--restart", "--pid-file", "/r/a=b", "--status-file", "/r/s"],  # '=' in a value
        ["--restart", "--pid-file=/r/p=q", "--status-file", "/r/s"],
    ],
)
def test_plain_client_lines_read_as_click_reads_them(argv: list[str]) -> None:
    quick = client_args(argv)
    assert quick is not None
    mode, options, as_json = quick
    click_mode, click_config, click_json, _options = parse(list(argv))
    assert (mode, as_json) == (click_mode, click_json)
    assert fields(client_options(options, mode)) == fields(click_config)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--pid-file", "/r/p"],  # no mode: the starter itself
        ["--restart", "--stop", "--pid-file", "/r/p"],  # two modes
        ["--restart", "--restart", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--restart", "--pid-file", "/r/p", "--pid-file", "/r/q", "--status-file", "/r/s"],
        ["--restart", "--json", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--status", "--json", "--json", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--restart", "--pid-file", "/r/p", "--status-file"],  # value missing
        ["--restart", "--pid-file", "--status-file", "/r/s"],  # value looks like an option
        ["--restart", "--timeout", "-1", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--restart", "--port", "8080", "--pid-file", "/r/p", "--status-file", "/r/s"],
        ["--restart", "--config", "/r/c.yaml"],
        ["--restart", "--pid-file", "/r/p", "--status-file", "/r/s", "--", "app"],
        ["--restart", "--pid-file", "/r/p", "--status-file", "/r/s", "app"],
        ["--restart", "--pid", "/r/p", "--status-file", "/r/s"],  # no abbreviations
        ["--restart", "-h"],
        ["--restart", "--help"],
        ["--version"],
    ],
)
def test_anything_else_goes_to_click(argv: list[str]) -> None:
    assert client_args(argv) is None


def test_a_plain_client_call_does_not_import_click_or_the_core() -> None:
    """The reason for the click-free path: what a deploy's --restart loads."""
    code = (
        "import sys\n"
        "from start_server.cli import main\n"
        "try:\n"
        "    main(['--restart', '--pid-file', '/none/p', '--status-file', '/none/s'])\n"
        "except SystemExit as exc:\n"
        "    print(exc.code)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('click', 'dataclasses', 'typing', 'socket', 'start_server')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    out = r.stdout.splitlines()
    assert out[0] == "1", r.stderr  # the pid file cannot be read: a system error, exit 1
    assert "--pid-file=/none/p: no start_server is running with this pid file" in r.stderr
    loaded = ast.literal_eval(out[1])
    assert loaded == [
        "start_server",
        "start_server.cli",
        "start_server.control",
        "start_server.files",
        "start_server.reexec",
        "start_server.signals",  # only the signal module, built in
        "start_server.values",
    ]


@pytest.mark.parametrize(
    ("orig_argv", "flags"),
    [
        (["py", "/venv/bin/start_server", "--port", "8080"], []),  # the console script
        (["py", "-m", "start_server", "--port", "8080"], []),
        (["py", "-I", "-X", "utf8", "-m", "start_server"], ["-I", "-X", "utf8"]),
        (
            ["py", "-OO", "-Wignore", "-W", "error", "s.py", "-I"],  # the script's own -I
            ["-OO", "-Wignore", "-W", "error"],
        ),
        (["py", "-S", "-B", "s.py"], ["-B"]),  # -S is added by the re-exec itself
        (["py", "-i", "s.py"], []),  # never an interactive prompt after the starter
        (["py", "-c", "code", "-I"], []),
    ],
)
def test_the_lean_re_exec_keeps_the_interpreter_flags(
    orig_argv: list[str], flags: list[str]
) -> None:
    from start_server.reexec import interpreter_flags

    assert interpreter_flags(orig_argv) == flags
