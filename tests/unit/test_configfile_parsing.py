"""--config FILE parsing: shapes, line numbers, messages, merging and precedence.

Pure: files are written to a temporary directory and read back; nothing runs.
The real invocations (exit codes, nothing left behind) are in
tests/integration/test_configfile.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from start_server.config import build
from start_server.configfile import REFUSED, FileConfig, Setting, merge, read
from start_server.options import option_kinds
from start_server.values import ConfigError

KINDS = option_kinds()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "start_server.yaml"
ENV = {"PATH": "/usr/bin:/bin"}
PROG = [sys.executable, "-c", "pass"]


def load(tmp_path: Path, text: str) -> FileConfig:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return read(str(path), KINDS)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    return message.replace(str(tmp_path / "s.yaml"), "F")


def values(fc: FileConfig) -> dict[str, Any]:
    return {name: s.value for name, s in fc.settings.items()}


# ---- what the file may hold ------------------------------------------------------


def test_every_long_option_is_a_key_with_dashes_or_underscores(tmp_path: Path) -> None:
    sample = {"list": "[1]", "flag": "true", "value": "'1'"}
    for name, kind in KINDS.items():
        for key in {name, name.replace("_", "-")}:
            fc = load(tmp_path, f"{key}: {sample[kind]}\n")
            assert list(fc.settings) == [name], key
            assert fc.settings[name].key == key


def test_the_cli_offers_the_options_a_file_may_set() -> None:
    # Flags, repeatables and values as click declares them; client actions are no keys.
    assert KINDS["port"] == KINDS["path"] == "list"
    assert {k for k, v in KINDS.items() if v == "flag"} >= {
        "daemonize", "enable_auto_restart", "wait_ready",
    }
    assert KINDS["interval"] == KINDS["pid_file"] == "value"
    assert not set(KINDS) & set(REFUSED)


def test_values_keep_the_text_as_written(tmp_path: Path) -> None:
    fc = load(
        tmp_path,
        "port: [8080, '127.0.0.1:8081', u9000=5]\n"
        "path: /run/a.sock\n"
        "interval: 0.50\n"
        "backlog: 1024\n"
        "signal-on-hup: QUIT\n"
        "log_file: '| logger -t app'\n"
        "daemonize: yes\n"
        "wait-ready: false\n"
        "command: [python3, app.py, --level, 1.10, yes, '']\n",
    )
    assert values(fc) == {
        "port": ("8080", "127.0.0.1:8081", "u9000=5"),
        "path": ("/run/a.sock",),  # a scalar is accepted for a repeatable option
        "interval": "0.50",  # not 0.5: build parses the text itself
        "backlog": "1024",
        "signal_on_hup": "QUIT",
        "log_file": "| logger -t app",
        "daemonize": True,
        "wait_ready": False,
        "command": ("python3", "app.py", "--level", "1.10", "yes", ""),
    }


def test_line_numbers_of_keys_and_list_items(tmp_path: Path) -> None:
    fc = load(tmp_path, "# comment\n\nport:\n  - 8080\n  - 8081\ninterval: 1\n")
    assert fc.settings["port"].line == 3
    assert fc.settings["port"].item_lines == (4, 5)
    assert fc.settings["interval"].line == 6


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    assert load(tmp_path, "").settings == {}
    assert load(tmp_path, "# only a comment\n").settings == {}


# ---- what it may not ------------------------------------------------------------------

BAD = [
    ("intervall: 1\n", "F:1: key 'intervall': unknown option (did you mean 'interval'?)"),
    ("interval: 1\npid_flie: /x\n",
     "F:2: key 'pid_flie': unknown option (did you mean 'pid-file'?)"),
    ("zzz: 1\n", "F:1: key 'zzz': unknown option"),
    ("restart: true\n", "F:1: key 'restart': a client action, not a setting"),
    ("stop: true\n", "F:1: key 'stop': a client action"),
    ("status: true\n", "F:1: key 'status': a client action"),
    ("json: true\n", "F:1: key 'json': an output switch of --status"),
    ("help: true\n", "F:1: key 'help': not a setting"),
    ("version: true\n", "F:1: key 'version': not a setting"),
    ("config: other.yaml\n", "F:1: key 'config': a config file cannot name another one"),
    ("port: {a: 1}\n", "F:1: key 'port': expected a value or a list of values, got a mapping"),
    ("port:\n  - 8080\n  - [1]\n", "F:3: key 'port': item 2: expected a value, got a list"),
    ("port:\n  - 8080\n  -\n", "F:3: key 'port': item 2: expected a value, got nothing"),
    ("interval: [1, 2]\n", "F:1: key 'interval': expected one value, got a list"),
    ("interval: true\n", "F:1: key 'interval': expected one value, got a boolean"),
    ("interval:\n", "F:1: key 'interval': expected one value, got nothing (remove the key"),
    ("interval: 2024-01-01\n", "F:1: key 'interval': expected one value, got a timestamp"),
    ("interval: !custom 1\n",
     "F:1: key 'interval': expected one value, got a value tagged !custom"),
    ("daemonize: 1\n", "F:1: key 'daemonize': expected true or false, got a int"),
    ("daemonize: 'true'\n", "F:1: key 'daemonize': expected true or false, got a str"),
    ("command: python3 app.py\n",
     "F:1: key 'command': expected a list such as [python3, app.py], got a string: it is not "
     "split into words"),
    ("command: {a: 1}\n", "F:1: key 'command': expected a list such as [python3, app.py], got a "
     "mapping"),
    ("command: []\n", "F:1: key 'command': empty list"),
    ("command:\n  - python3\n  - [x]\n", "F:3: key 'command': item 2: expected a word, got a list"),
    ("port: 1\npid-file: a\npid_file: b\n", "F:3: key 'pid_file': given twice (first on line 2)"),
    ("<<: {port: 1}\n", "F:1: key '<<': YAML merge keys are not supported"),
    ("1: x\n", "F:1: keys must be option names"),
    ("- port\n", "F:1: expected a mapping of option: value"),
    ("just text\n", "F:1: expected a mapping of option: value"),
    ("port: [1, 2\ninterval: 1\n", "F:2: YAML syntax error: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence on line 1)"),
    ("port: 1\n  interval: 2\n", "F:2: YAML syntax error: mapping values are not allowed here"),
    ("log-file: | cat\n", "F:1: YAML syntax error: expected a comment or a line break"),
    ("port: 1\n---\nport: 2\n", "F:2: YAML syntax error: a second YAML document ('---')"),
    ("port: *nowhere\n", "F:1: YAML syntax error: found undefined alias 'nowhere'"),
    ("port: 1\ninterval: \x07\n", "F:2: YAML syntax error: special characters are not allowed"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1][5:45] for b in BAD])
def test_bad_files(tmp_path: Path, text: str, expected: str) -> None:
    assert error(tmp_path, text).startswith("--config=" + expected)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"port: 1\ndir: caf\xe9\n")
    with pytest.raises(ConfigError, match=re.escape(f"--config={path}:2: not UTF-8 text")):
        read(str(path), KINDS)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read(str(tmp_path / "nope.yaml"), KINDS)
    assert str(info.value) == (
        f"--config={tmp_path}/nope.yaml: cannot read: No such file or directory"
    )
    with pytest.raises(ConfigError) as info:
        read(str(tmp_path), KINDS)
    assert str(info.value) == f"--config={tmp_path}: cannot read: Is a directory"
    with pytest.raises(ConfigError, match=r"^--config=: empty path$"):
        read("", KINDS)


# ---- merging and precedence ----------------------------------------------------------


def cli_options(**given: Any) -> dict[str, Any]:
    """What click hands over when only ``given`` was on the command line."""
    options: dict[str, Any] = {
        name: (() if kind == "list" else None) for name, kind in KINDS.items()
    }
    options["command"] = ()
    options.update(given)
    return options


def test_the_command_line_wins_over_the_file(tmp_path: Path) -> None:
    fc = load(tmp_path, "port: [1, 2]\ninterval: 3\nbacklog: 7\ncommand: [a, b]\n")
    merged, used = merge(
        cli_options(port=("9",), interval="0.1", command=("x",)), {"port", "interval"}, fc
    )
    assert merged["port"] == ("9",)  # a list on the command line replaces the file's
    assert merged["interval"] == "0.1"
    assert merged["backlog"] == "7"
    assert merged["command"] == ("x",)
    assert set(used.settings) == {"backlog"}  # only what the file decided can be blamed on it


def test_the_file_gives_the_command_when_the_command_line_has_none(tmp_path: Path) -> None:
    fc = load(tmp_path, "command: [a, b]\n")
    merged, used = merge(cli_options(), set(), fc)
    assert merged["command"] == ("a", "b")
    assert set(used.settings) == {"command"}


def built(tmp_path: Path, text: str, env: dict[str, str], **given: Any) -> Any:
    fc = load(tmp_path, text + f"command: {PROG!r}\n")
    merged, _ = merge(cli_options(**given), set(given), fc)
    return build(merged, {**ENV, **env})


@pytest.mark.parametrize(
    ("text", "env", "given", "expected"),
    [
        # command line > file > environment > default
        ("kill-old-delay: 2\n", {"KILL_OLD_DELAY": "3"}, {"kill_old_delay": "1"}, 1.0),
        ("kill-old-delay: 2\n", {"KILL_OLD_DELAY": "3"}, {}, 2.0),
        ("", {"KILL_OLD_DELAY": "3"}, {}, 3.0),
        ("", {}, {}, None),
    ],
)
def test_precedence_of_a_value(
    tmp_path: Path, text: str, env: dict[str, str], given: dict[str, Any], expected: Any
) -> None:
    assert built(tmp_path, text, env, **given).policy.kill_old_delay == expected


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("enable-auto-restart: false\n", {"ENABLE_AUTO_RESTART": "1"}, False),  # file > env
        ("enable-auto-restart: true\n", {"ENABLE_AUTO_RESTART": "0"}, True),
        ("", {"ENABLE_AUTO_RESTART": "1"}, True),  # not in the file: the variable decides
        ("", {}, False),
    ],
)
def test_precedence_of_a_flag(
    tmp_path: Path, text: str, env: dict[str, str], expected: bool
) -> None:
    assert built(tmp_path, text, env).policy.auto_restart is expected


def test_auto_restart_interval_from_the_file_beats_the_variable(tmp_path: Path) -> None:
    config = built(tmp_path, "auto-restart-interval: 10\n", {"AUTO_RESTART_INTERVAL": "20"})
    assert config.policy.auto_restart_interval == 10


@pytest.mark.parametrize(
    ("text", "given", "expected"),
    [("min-uptime: 2.5\n", {}, 2.5), ("min_uptime: 2\n", {"min_uptime": "0"}, 0.0), ("", {}, 1.0)],
)
def test_min_uptime_from_the_file_or_the_command_line(
    tmp_path: Path, text: str, given: dict[str, Any], expected: float
) -> None:
    assert built(tmp_path, text, {}, **given).policy.min_uptime == expected


def test_fd_limits_and_the_health_check_interval_from_the_file(tmp_path: Path) -> None:
    p = built(
        tmp_path, "max-open-files: 4000\nmax_fd_fraction: 0.8\nhealth-check-interval: 2\n", {}
    ).policy
    assert (p.max_open_files, p.max_fd_fraction, p.health_check_interval) == (4000, 0.8, 2.0)
    assert built(tmp_path, "memory-check-interval: 3\n", {}).policy.health_check_interval == 3.0
    assert built(tmp_path, "", {}).policy.health_check_interval == 5.0


@pytest.mark.parametrize(
    ("text", "given", "expected"),
    [
        # The command line wins under either name over the file's other name.
        ("memory-check-interval: 3\n", {"health_check_interval": "1"}, 1.0),
        ("health-check-interval: 3\n", {"memory_check_interval": "1"}, 1.0),
        ("health-check-interval: 3\n", {}, 3.0),
    ],
)
def test_the_old_name_of_the_health_check_interval(
    tmp_path: Path, text: str, given: dict[str, Any], expected: float
) -> None:
    assert built(tmp_path, text, {}, **given).policy.health_check_interval == expected


# ---- a build error told in the file's terms ---------------------------------------------


def explained(tmp_path: Path, text: str, env: dict[str, str] | None = None, **given: Any) -> str:
    fc = load(tmp_path, text)
    merged, used = merge(cli_options(**given), set(given), fc)
    with pytest.raises(ConfigError) as info:
        build(merged, {**ENV, **(env or {})})
    return used.explain(info.value).replace(str(tmp_path / "s.yaml"), "F")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"interval: abc\ncommand: {PROG!r}\n",
         "--config=F:1: key 'interval': value 'abc': not a number"),
        (f"command: {PROG!r}\nworkers: -1\n",
         "--config=F:2: key 'workers': value '-1': must be >= 1"),
        (f"port:\n  - 8080\n  - 70000\ncommand: {PROG!r}\n",
         "--config=F:3: key 'port': value '70000': port 70000 out of range"),
        (f"signal-on-hup: FOO\ncommand: {PROG!r}\n",
         "--config=F:1: key 'signal-on-hup': value 'FOO': unknown signal"),
        (f"daemonize: true\ncommand: {PROG!r}\n",
         "--config=F:1: key 'daemonize': requires --log-file"),
        ("command: [no-such-program-c0nf1g]\n",
         "--config=F:1: key 'command': command 'no-such-program-c0nf1g': not found in PATH"),
        (f"command: {PROG!r}\nmax-fd-fraction: 2\n",
         "--config=F:2: key 'max-fd-fraction': value '2': must be > 0 and <= 1"),
        (f"command: {PROG!r}\nmemory-check-interval: 1\nhealth-check-interval: 2\n",
         "--config=F:2: key 'memory-check-interval': value '1': the old name of "
         "--health-check-interval"),
        ("interval: 1\n", "--config=F: no server program: add 'command: [prog, args...]'"),
    ],
)
def test_build_errors_name_the_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert explained(tmp_path, text).startswith(expected)


def test_errors_of_the_command_line_and_environment_stay_theirs(tmp_path: Path) -> None:
    text = f"interval: abc\ncommand: {PROG!r}\n"
    assert explained(tmp_path, text, interval="xyz").startswith("--interval=xyz: not a number")
    assert explained(
        tmp_path, f"command: {PROG!r}\n", {"KILL_OLD_DELAY": "soon"}
    ).startswith("KILL_OLD_DELAY=soon: not a number")


def test_explain_matches_the_value_not_just_the_option() -> None:
    fc = FileConfig("F", {"port": Setting("port", 3, ("80", "8080"), (4, 5))})
    in_use = ConfigError.of("--port", "8080", "in use")
    assert fc.explain(in_use).startswith("--config=F:5: key 'port': value '8080'")
    in_use = ConfigError.of("--port", "9", "in use")
    assert fc.explain(in_use) == "--port=9: in use"  # not the file's value


# ---- the example ---------------------------------------------------------------------------


def test_the_example_is_valid_and_mentions_every_option() -> None:
    fc = read(str(EXAMPLE), KINDS)
    assert fc.settings["command"].value == (".venv/bin/python", "examples/hello_app.py")
    text = EXAMPLE.read_text()
    for name in KINDS:
        key = name.replace("_", "-")
        assert re.search(rf"^#? ?{re.escape(key)}:", text, re.M), f"{key} is not in the example"
