"""The entry point: one parser (click) for every command line, and the lean
process of the re-exec, which reads its options from the hand-over alone.

A client (``--restart`` on every deploy) loads click but not the starter's
core; the lean starter loads neither click nor PyYAML (nor typing): it runs
for months and a Python process cannot unload a module.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import start_server
from start_server.options import parse

PACKAGE_PARENT = str(Path(start_server.__file__).resolve().parent.parent)
HEAVY = ("click", "yaml", "typing")


def test_a_client_call_reads_through_click_and_loads_no_core() -> None:
    code = (
        "import sys\n"
        "from start_server.cli import main\n"
        "try:\n"
        "    main(['--restart', '--pid-file', '/none/p', '--status-file', '/none/s'])\n"
        "except SystemExit as exc:\n"
        "    print(exc.code)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('click', 'yaml', 'start_server')))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    out = r.stdout.splitlines()
    assert out[0] == "1", r.stderr  # the pid file cannot be read: a system error, exit 1
    assert "--pid-file=/none/p: no start_server is running with this pid file" in r.stderr
    loaded = set(ast.literal_eval(out[1]))
    assert "click" in loaded  # one parser
    assert not loaded & {"yaml", "start_server.config", "start_server.core", "start_server.loop"}


def _lean(args: list[str], fd: int) -> subprocess.CompletedProcess[str]:
    """``main_lean`` as starter.py runs it (``python -S``), its serving replaced
    by a print of the modules it holds by then."""
    code = (
        "import sys\n"
        f"sys.path.append({PACKAGE_PARENT!r})\n"
        "from start_server import loop\n"
        "def serve(config, environ, options=None):\n"
        f"    print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
        "    print(config.command)\n"
        "    return 0\n"
        "loop.serve = serve\n"
        "from start_server.cli import main_lean\n"
        f"sys.argv = ['starter.py', *{args!r}]\n"
        "main_lean()\n"
    )
    return subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30,
        check=False, pass_fds=(fd,),
    )


def test_the_lean_process_serves_the_handed_over_options_without_click_or_yaml() -> None:
    from start_server import handover, reexec

    _mode, _config, _json, options = parse(["--port=127.0.0.1:0", "--", sys.executable, "-V"])
    fd = handover.write(reexec.KIND, {"options": options, "path": []})
    try:
        r = _lean([handover.argument(fd), "--port=127.0.0.1:0", "--", "ignored"], fd)
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    held, command = r.stdout.splitlines()
    assert ast.literal_eval(held) == []
    assert list(ast.literal_eval(command)) == [sys.executable, "-V"]  # the hand-over's, not argv's


def test_a_lean_process_refuses_options_that_are_no_longer_valid() -> None:
    """Checked again: the same files and environment, as the full process saw them."""
    from start_server import handover, reexec

    options = {"port": ["abc"], "command": [sys.executable]}
    fd = handover.write(reexec.KIND, {"options": options, "path": []})
    try:
        r = _lean([handover.argument(fd)], fd)
    finally:
        os.close(fd)
    assert r.returncode == 2
    assert r.stderr.startswith("start_server: --port=abc:") and r.stderr.count("\n") == 1


def test_the_hand_over_is_never_in_the_options_json_of_the_environment() -> None:
    """What ``exec_lean`` writes is a memory file's content, read back as written."""
    from start_server import handover

    fd = handover.write("options", {"options": {"port": ["8080"]}, "path": ["/x"]})
    doc = json.loads(os.pread(fd, 1 << 16, 0))
    assert doc == {"format": 1, "kind": "options", "options": {"port": ["8080"]}, "path": ["/x"]}
    assert os.get_inheritable(fd)
    os.close(fd)


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
