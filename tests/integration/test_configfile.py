"""--config FILE with real invocations: bad files, precedence, the shipped example.

Bad input is a table, as in test_bad_input.py: each row is a YAML text (with
``{placeholders}``), extra arguments, and the start of the one stderr line.
Every row proves exit 2, empty stdout, no "starting now", no new file and no
process left behind.
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import APP, PY, Harness, free_port, http_get, read_status, wait_until

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "start_server.yaml"
GOOD_CMD = "command: ['{py}', '{app}']\n"


@dataclass(frozen=True)
class Row:
    id: str
    yaml: str  # written to {tmp}/s.yaml unless None
    head: str  # stderr is "start_server: " + head ...
    args: tuple[str, ...] = ("--config={tmp}/s.yaml",)
    env: dict[str, str] = field(default_factory=dict)


ROWS = [
    Row("unknown-key", "port: '127.0.0.1:{port}'\nintervall: 1\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:2: key 'intervall': unknown option (did you mean 'interval'?)"),
    Row("port-mapping", "port: {{a: 1}}\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:1: key 'port': expected a value or a list of values, "
        "got a mapping"),
    Row("port-item-out-of-range",
        "port:\n  - '127.0.0.1:{port}'\n  - 70000\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:3: key 'port': value '70000': port 70000 out of range"),
    Row("port-fd-collision",
        "port: ['127.0.0.1:{port}=5', '127.0.0.1:{port2}=5']\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:1: key 'port': value '127.0.0.1:{port2}=5': fd 5"),
    Row("interval-not-a-number", GOOD_CMD + "interval: abc\n",
        "--config={tmp}/s.yaml:2: key 'interval': value 'abc': not a number"),
    Row("interval-boolean", GOOD_CMD + "interval: yes\n",
        "--config={tmp}/s.yaml:2: key 'interval': expected one value, got a boolean"),
    Row("workers-negative", "workers: -1\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:1: key 'workers': value '-1': must be >= 1"),
    Row("flag-not-boolean", "wait-ready: 1\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:1: key 'wait-ready': expected true or false"),
    Row("daemonize-without-log-file", GOOD_CMD + "daemonize: true\n",
        "--config={tmp}/s.yaml:2: key 'daemonize': requires --log-file"),
    Row("pid-file-missing-directory", "pid_file: '{tmp}/nowhere/pid'\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:1: key 'pid_file': value '{tmp}/nowhere/pid': directory "),
    Row("refused-key", GOOD_CMD + "stop: true\n",
        "--config={tmp}/s.yaml:2: key 'stop': a client action, not a setting"),
    Row("config-in-config", "config: other.yaml\n",
        "--config={tmp}/s.yaml:1: key 'config': a config file cannot name another one"),
    Row("duplicate-key", "pid-file: '{tmp}/a'\npid_file: '{tmp}/b'\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:2: key 'pid_file': given twice (first on line 1)"),
    Row("command-string", "command: '{py} {app}'\n",
        "--config={tmp}/s.yaml:1: key 'command': expected a list such as [python3, app.py], "
        "got a string: it is not split into words"),
    Row("command-not-found", "command: [no-such-program-c0nf1g]\n",
        "--config={tmp}/s.yaml:1: key 'command': command 'no-such-program-c0nf1g': not found"),
    Row("no-command", "port: '127.0.0.1:{port}'\n",
        "--config={tmp}/s.yaml: no server program: add 'command: [prog, args...]'"),
    Row("yaml-syntax", "port: ['127.0.0.1:{port}'\n" + GOOD_CMD,
        "--config={tmp}/s.yaml:2: YAML syntax error: expected ',' or ']'"),
    Row("yaml-unquoted-pipe", GOOD_CMD + "log-file: | cat\n",
        "--config={tmp}/s.yaml:2: YAML syntax error: expected a comment or a line break, but "
        "found 'c' (while scanning a block scalar); quote a value that starts with '|'"),
    Row("top-level-list", "- port\n",
        "--config={tmp}/s.yaml:1: expected a mapping of option: value"),
    Row("missing-file", "", "--config={tmp}/nope.yaml: cannot read: No such file or directory",
        args=("--config={tmp}/nope.yaml",)),
    Row("directory", "", "--config={tmp}: cannot read: Is a directory",
        args=("--config={tmp}",)),
    Row("empty-path", "", "--config=: empty path", args=("--config=",)),
    # The command line's own value is blamed on the command line, not the file.
    Row("bad-value-on-the-command-line", "interval: 1\n" + GOOD_CMD,
        "--interval=abc: not a number", args=("--config={tmp}/s.yaml", "--interval=abc")),
    # An environment variable is still read when the file does not set the option.
    Row("bad-env-not-overridden", GOOD_CMD, "KILL_OLD_DELAY=soon: not a number",
        env={"KILL_OLD_DELAY": "soon"}),
    # A client with the file: it needs the pid file from somewhere.
    Row("stop-without-pid-file", GOOD_CMD, "--stop: requires --pid-file",
        args=("--config={tmp}/s.yaml", "--stop")),
]


def _tree(d: Path) -> set[str]:
    return {str(p) for p in d.rglob("*")}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_config(run: Harness, row: Row) -> None:
    values: dict[str, Any] = {
        "tmp": run.tmp, "py": PY, "app": APP, "port": free_port(), "port2": free_port(),
    }
    if row.yaml:
        (run.tmp / "s.yaml").write_text(row.yaml.format(**values))
    before = _tree(run.tmp)
    procs_before = set(run.leftovers())

    r = run.run(*(a.format(**values) for a in row.args), env=row.env)

    line = r.stderr.rstrip("\n")
    assert r.stderr == line + "\n", f"not one line:\n{r.stderr}"
    assert line.startswith("start_server: " + row.head.format(**values)), line
    assert r.returncode == 2, line
    assert r.stdout == ""
    assert _tree(run.tmp) == before, "files left behind"
    assert set(run.leftovers()) - procs_before == set(), "processes left behind"


# ---- precedence, through the real command line -----------------------------------------


def _serve(run: Harness, yaml: str, *args: str, env: dict[str, str] | None = None) -> Any:
    (run.tmp / "s.yaml").write_text(yaml)
    return run.start(f"--config={run.tmp / 's.yaml'}", *args, env=env)


def test_command_line_beats_file_beats_environment(run: Harness) -> None:
    # The starter exports its kill-old-delay to the children: the app shows it.
    port, port2 = free_port(), free_port()
    yaml = (
        f"port: ['127.0.0.1:{port}']\ninterval: 0.1\nkill-old-delay: 2\n"
        f"command: ['{PY}', '{APP}']\n"
    )
    s = _serve(run, yaml, env={"KILL_OLD_DELAY": "3"})
    s.wait_line(r"gen=1 .*is now running")
    assert http_get(port, "/env/KILL_OLD_DELAY") == "2\n"  # the file beats the variable
    s.stop()
    assert s.wait() == 0

    t = _serve(run, yaml, f"--port=127.0.0.1:{port2}", "--kill-old-delay=1",
               env={"KILL_OLD_DELAY": "3"})
    t.wait_line(r"gen=1 .*is now running")
    assert http_get(port2, "/env/KILL_OLD_DELAY") == "1\n"  # the command line beats the file
    assert "127.0.0.1:" + str(port) not in t.output  # its port list replaced the file's


def test_a_file_flag_beats_the_environment(run: Harness) -> None:
    port = free_port()
    s = _serve(
        run,
        f"port: '127.0.0.1:{port}'\ninterval: 0.1\nenable-auto-restart: true\n"
        f"auto-restart-interval: 0.5\ncommand: ['{PY}', '{APP}']\n",
        env={"ENABLE_AUTO_RESTART": "0", "AUTO_RESTART_INTERVAL": "100"},
    )
    s.wait_line(r"autorestart triggered \(interval=0.5\)", timeout=20)


def test_the_command_after_dashes_beats_the_files(run: Harness) -> None:
    port = free_port()
    s = _serve(
        run, f"port: '127.0.0.1:{port}'\ninterval: 0.1\ncommand: [no-such-program-c0nf1g]\n",
        "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    assert http_get(port).startswith("gen=1 ")


def test_clients_find_the_starter_through_the_file(run: Harness) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    yaml = (
        f"port: '127.0.0.1:{port}'\ninterval: 0.1\npid-file: '{pid_file}'\n"
        f"status-file: '{status}'\ncommand: ['{PY}', '{APP}']\n"
    )
    s = _serve(run, yaml)
    s.wait_line(r"gen=1 .*is now running")
    config = f"--config={run.tmp / 's.yaml'}"
    restart = run.run(config, "--restart")
    assert restart.returncode == 0, restart
    assert [g for g, _ in read_status(status)] == [2]
    stop = run.run(config, "--stop")
    assert stop.returncode == 0, stop
    assert s.wait() == 0
    assert not pid_file.exists()


# ---- the shipped example ------------------------------------------------------------------


def test_the_example_runs(run: Harness) -> None:
    """examples/start_server.yaml as shipped, from the repository's top directory, with
    only its port and file paths moved out of the way of other tests."""
    port = free_port()
    text = EXAMPLE.read_text()
    for old, new in [
        ('port: ["127.0.0.1:8080"]', f'port: ["127.0.0.1:{port}"]'),
        ("/tmp/start_server-example.pid", str(run.tmp / "pid")),
        ("/tmp/start_server-example.status", str(run.tmp / "status")),
    ]:
        assert text.count(old) == 1, f"the example no longer has {old!r}"
        text = text.replace(old, new)
    config = run.tmp / "start_server.yaml"
    config.write_text(text)
    # The example names `.venv/bin/python`: the checkout's venv, made by .ci/run or the README.
    path = os.path.dirname(PY) + os.pathsep + os.environ.get("PATH", os.defpath)
    s = run.start(f"--config={config}", env={"PATH": path}, cwd=str(REPO))
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=20)  # wait-ready: true
    body = wait_until(lambda: http_get(port), what="a response")
    assert re.fullmatch(r"hello from generation 1 pid \d+\n", body), body
    assert (run.tmp / "pid").read_text() == f"{s.pid}\n"
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    s.wait_line(r"exiting")
    assert not (run.tmp / "pid").exists()
    assert not (run.tmp / "status").exists()
