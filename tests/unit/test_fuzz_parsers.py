"""Property tests of every parser of outside input: a value or one clear error
(our own error types, a one-line message), never another exception.

Port specs, paths, signal names, sizes, numbers, the pid file, the status file,
the JSON sidecar (through ``--status``'s renderer), envdir entries and their
policy values, YAML config files (through ``config.build``), whole option sets,
and ``SERVER_STARTER_PORT`` as an app reads it. The port grammar is also held
to the original's own regexes, run by perl side by side.

More examples (100 each by default)::

    START_SERVER_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/unit/test_fuzz_parsers.py
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from start_server import control, files, sockets, spec
from start_server.config import build
from start_server.configfile import merge, read
from start_server.core import Supervisor
from start_server.envdir import ENVDIR_LIMIT, read_envdir
from start_server.listener import ServerStarterError, parse_port_env
from start_server.options import option_kinds
from start_server.policy import Policy
from start_server.values import (
    MAX_SECONDS,
    ConfigError,
    SpecError,
    one_line,
    parse_seconds,
    parse_whole,
)

# 100 examples each by default; START_SERVER_FUZZ_EXAMPLES=20000 for a long run.
FUZZ = settings(
    max_examples=int(os.environ.get("START_SERVER_FUZZ_EXAMPLES", "100")),
    deadline=None,  # a loaded 2-core machine: no per-example deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

T = TypeVar("T")


def one_of_ours(call: Callable[[], T], *errors: type[Exception]) -> Optional[T]:
    """``call()``'s value, or None if it raised one of ``errors`` with a one-line message."""
    try:
        return call()
    except errors as exc:
        message = one_line(str(exc))  # as cli.fail prints it
        assert message and "\n" not in message and message.isprintable(), repr(message)
        return None


# Characters that matter to the grammars, and some that must not sneak in.
GRAMMAR = " \t\n[]:u=0123456789.%;-+eE_afx\uff11\u0662\u00b2\x00"
tricky_text = st.one_of(st.text(alphabet=GRAMMAR, max_size=24), st.text(max_size=24))


# ---- the --port grammar, against the original's regexes ----------------------------

ORIGINAL = Path("/usr/share/perl5/Server/Starter.pm")  # Debian's libserver-starter-perl
# The two regexes of the original's port loop, as its source spells them (0.35).
PLAIN_RX = r"/^\s*(u?)(\d+)(?:\s*=(\d+))?\s*$/"
HOSTED_RX = r"/^\s*(?:\[\s*|)([^\]]*)\s*(?:\]\s*|):\s*(u?)(\d+)(?:\s*=(\d+))?\s*$/"
PERL = r"""
$| = 1;
while (my $line = <STDIN>) {
    chomp $line;
    my $s = pack("H*", $line);
    if ($s =~ PLAIN) {
        print join("\t", "P", "", $1, $2, defined $3 ? $3 : "-"), "\n";
    } elsif ($s =~ HOSTED) {
        print join("\t", "H", unpack("H*", $1), $2, $3, defined $4 ? $4 : "-"), "\n";
    } else {
        print "N\n";
    }
}
"""  # argv reaches the original's regexes as bytes, as these hex-decoded lines do


@pytest.fixture(scope="module")
def perl() -> Iterator[Callable[[str], tuple[str, ...]]]:
    """Ask the original's own regexes, taken from its installed source, about a spec."""
    if shutil.which("perl") is None or not ORIGINAL.exists():
        pytest.skip("the original (libserver-starter-perl) is not installed")
    source = ORIGINAL.read_text()
    # Both must still be there verbatim: a new version of the original fails here.
    assert f"$hostport =~ {PLAIN_RX}" in source and f"$hostport =~ {HOSTED_RX}" in source
    script = PERL.replace("PLAIN", PLAIN_RX).replace("HOSTED", HOSTED_RX)
    proc = subprocess.Popen(
        ["perl", "-e", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(raw: str) -> tuple[str, ...]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(raw.encode().hex() + "\n")
        proc.stdin.flush()
        fields = proc.stdout.readline().rstrip("\n").split("\t")
        if fields[0] == "H":
            fields[1] = bytes.fromhex(fields[1]).decode()
        return tuple(fields)

    yield ask
    proc.stdin.close()
    proc.wait(10)
    proc.stdout.close()


def _v6(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return False
    return True


@st.composite
def port_specs(draw: st.DrawFn) -> str:
    """Specs built from the grammar's parts, well- and ill-formed."""
    blank = st.sampled_from(["", "", " ", "\t", "  "])
    host = draw(st.sampled_from([
        "", "127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "a b", "::g", "1.2.3.4:5",
        "fe80::1%lo", "[::1", "h\x00", "\u00e9t\u00e9", "::1 ",
    ]))
    brackets = draw(st.sampled_from(["", "[]", "[", "]"]))
    port = draw(st.sampled_from(
        ["80", "0", "65535", "65536", "08080", "\uff18\uff10", "", "9" * 30]
    ))
    fd = draw(st.sampled_from(["", "=3", " =3", "= 3", "=99999999999", "=\uff13", "="]))
    parts = [draw(blank)]
    if host or brackets or draw(st.booleans()):
        parts += [brackets[:1] if brackets in ("[]", "[") else "", host,
                  "]" if brackets in ("[]", "]") else "", draw(blank), ":", draw(blank)]
    parts += [draw(st.sampled_from(["", "u"])), port, draw(blank), fd, draw(blank)]
    return "".join(parts)


@FUZZ
@given(raw=st.one_of(port_specs(), tricky_text))
def test_port_spec_is_the_originals_grammar(
    perl: Callable[[str], tuple[str, ...]], raw: str
) -> None:
    theirs = perl(raw)
    ours = one_of_ours(lambda: spec.parse_port(raw), SpecError)
    if theirs[0] == "N":
        assert ours is None, f"{raw!r}: the original refuses it, we took {ours}"
        return
    kind, host, udp, port, fd = theirs
    key = port if kind == "P" else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ours is not None:
        assert (ours.host, ours.udp, ours.port_text, ours.fd, ours.key) == (
            host or None, udp == "u", port, None if fd == "-" else int(fd), key
        ), raw
        return
    # We refuse what the original takes only where it cannot bind it either
    # (it fails to resolve the host, or to dup2), or where the port is out of
    # range (it truncates to 16 bits; we refuse, as documented).
    ipv6 = ":" in host
    assert (
        (kind == "H" and (host == "" or any(c.isspace() for c in host)
                          or not host.isprintable() or (ipv6 and not _v6(host))))
        or int(port) > 65535
        or (fd != "-" and int(fd) > spec.MAX_FD)
    ), f"{raw!r}: the original takes it as {theirs}, we refuse it"


def test_the_originals_grammar_examples(perl: Callable[[str], tuple[str, ...]]) -> None:
    """What the issue names, checked against the running original too."""
    assert perl("[127.0.0.1]:8080")[:2] == ("H", "127.0.0.1")
    assert spec.parse_port("[127.0.0.1]:8080").key == "127.0.0.1:8080"
    assert perl("[::1:80")[:2] == ("H", "::1")  # the original binds [::1]:80 too
    assert spec.parse_port("[::1:80").key == "[::1]:80"
    assert perl("80= 3") == ("N",)
    with pytest.raises(SpecError):
        spec.parse_port("80= 3")


# ---- paths, signals, sizes, numbers --------------------------------------------------


@FUZZ
@given(raw=st.one_of(tricky_text, st.text(min_size=100, max_size=140)))
def test_path_spec(raw: str) -> None:
    got = one_of_ours(lambda: spec.parse_path(raw), SpecError)
    if got is not None:
        assert got.key == raw and not set(raw) & {";", "=", "\0"}
        assert 0 < len(os.fsencode(raw)) <= spec.MAX_SUN_PATH


@FUZZ
@given(raw=st.one_of(tricky_text, st.sampled_from(["TERM", "sigusr1", " 9 ", "99", "0", "KILL"])))
def test_signal_name(raw: str) -> None:
    got = one_of_ours(lambda: spec.parse_signal(raw), SpecError)
    if got is not None:
        assert isinstance(got, signal.Signals)


@FUZZ
@given(raw=st.one_of(
    tricky_text, st.from_regex(r"\A\s*[0-9]{1,400}(\.[0-9]+)?\s*[kKmMgGtTpP]?i?[bB]?\Z")
))
def test_size(raw: str) -> None:
    got = one_of_ours(lambda: spec.parse_size(raw), SpecError)
    if got is not None:
        assert 0 < got <= spec.MAX_SIZE


numbers = st.one_of(
    tricky_text,
    st.from_regex(r"\A\s*[+-]?[0-9]{0,30}(\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?\s*\Z"),
    st.floats(), st.integers(min_value=-(2**80), max_value=2**80), st.booleans(),
)


@FUZZ
@given(raw=numbers, allow_zero=st.booleans())
def test_seconds(raw: Any, allow_zero: bool) -> None:
    got = one_of_ours(lambda: parse_seconds(raw, allow_zero=allow_zero), SpecError)
    if got is not None:
        assert math.isfinite(got) and 0 <= got <= MAX_SECONDS
        assert got > 0 or allow_zero


@FUZZ
@given(raw=numbers)
def test_whole_numbers_and_fractions(raw: Any) -> None:
    got = one_of_ours(lambda: parse_whole(raw, minimum=1, maximum=4096), SpecError)
    if got is not None:
        assert isinstance(got, int) and 1 <= got <= 4096
    if isinstance(raw, (str, float)):
        frac = one_of_ours(lambda: spec.parse_fraction(raw), SpecError)
        if frac is not None:
            assert 0 < frac <= 1


# ---- the files a client reads ----------------------------------------------------------


pid_bytes = st.one_of(
    st.binary(max_size=70),
    st.tuples(
        st.sampled_from([b"", b" ", b"\t"]), st.integers(min_value=-5, max_value=10**25),
        st.sampled_from([b"", b"\n", b" \r\n", b"\nrest", b"x"]),
    ).map(lambda t: t[0] + str(t[1]).encode() + t[2]),
    st.text(alphabet="0123456789\uff11\u00b2 \n-+", max_size=20).map(str.encode),
)


@FUZZ
@given(data=pid_bytes)
def test_pid_file(tmp_path: Path, data: bytes) -> None:
    parsed = files.parse_pid(data)
    assert parsed is None or 1 <= parsed <= files.PID_MAX
    path = tmp_path / "pid"
    path.write_bytes(data)
    pid = one_of_ours(lambda: files.read_pid(str(path)), files.FileError)
    if pid is not None:
        assert 1 <= pid <= files.PID_MAX and data.lstrip(b" \t")[:1].isdigit()


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet="0123456789:\n \uff11", max_size=80)))
def test_status_file(text: str) -> None:
    for gen, pid in files.parse_status(text):
        assert 0 <= gen < 10**18 and 0 <= pid < 10**18


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["generation", "worker", "pid", "state", "ready", "spawned_at", "memory",
                         "fds", "status", "generations", "starter_pid", "failed_generation",
                         "failed_at", "failed_reason", "next_attempt_at", "x"]),
        inner, max_size=8,
    ),
    max_leaves=30,
)


@FUZZ
@given(detail=json_values)
def test_status_json(tmp_path: Path, detail: Any) -> None:
    """``--status`` renders any JSON sidecar: read back as the file would be, bounded lines."""
    path = tmp_path / "status.json"
    path.write_text(json.dumps(detail))
    read_back = files.read_json(str(path))
    if not isinstance(detail, dict):
        assert read_back is None
        return
    assert read_back is not None
    lines = control.render(read_back, 4242, 1_800_000_000.0)
    assert lines[0].startswith("start_server pid ")
    assert all(len(line) < 2000 and line.isprintable() for line in lines), lines


# ---- envdir entries and the policy values they carry ------------------------------------


entry_bytes = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"\n", b"nan\n", b"inf", b"1e11\n", b"-1\n", b"\xef\xbc\x95\n",
                     b"5\x00x\n", b"0.25  \t\nrest", b"1" * 50 + b"\n"]),
)
ENTRY_NAMES = ["KILL_OLD_DELAY", "ENABLE_AUTO_RESTART", "AUTO_RESTART_INTERVAL", "FOO", ".hidden",
               "A=B"]


@FUZZ
@given(entries=st.dictionaries(st.sampled_from(ENTRY_NAMES), entry_bytes, max_size=5),
       special=st.sampled_from([None, "fifo", "dev-zero", "dir", "long", "dangling"]))
def test_envdir_entries_and_policy_values(
    tmp_path: Path, entries: dict[str, bytes], special: Optional[str]
) -> None:
    envdir = tmp_path / f"env{os.urandom(4).hex()}"
    envdir.mkdir()
    for name, data in entries.items():
        (envdir / name).write_bytes(data)
    if special == "fifo":
        os.mkfifo(envdir / "SPECIAL")
    elif special == "dev-zero":
        (envdir / "SPECIAL").symlink_to("/dev/zero")
    elif special == "dir":
        (envdir / "SPECIAL").mkdir()
    elif special == "long":
        (envdir / "SPECIAL").write_bytes(b"y" * (ENVDIR_LIMIT + 10))
    elif special == "dangling":
        (envdir / "SPECIAL").symlink_to(envdir / "nowhere")
    values = read_envdir(str(envdir))
    assert "SPECIAL" not in values and ".hidden" not in values and "A=B" not in values
    for name, value in values.items():
        if value is not None:  # the first line; its NULs become newlines (daemontools)
            first = entries[name].split(b"\n", 1)[0]
            assert len(value) <= ENVDIR_LIMIT and value.count("\n") == first.count(b"\0")
    overrides = {k: v for k, v in values.items() if v is not None}
    sup = Supervisor(Policy())
    sup._apply_overrides(overrides)
    p = sup.policy
    for number in (p.effective_kill_old_delay, p.auto_restart_interval):
        assert math.isfinite(number) and 0 <= number <= MAX_SECONDS


# ---- YAML config files and whole option sets --------------------------------------------


KINDS = option_kinds()
PROG = [sys.executable, "-c", "pass"]
option_values = st.one_of(
    tricky_text, st.integers(), st.floats(), st.booleans(), st.none(),
    st.lists(tricky_text, max_size=3),
    st.sampled_from(["127.0.0.1:0", "u0", "1", "0.5", "TERM", "1e400", "inf", "400M", "[::1]:0"]),
)


@FUZZ
@given(doc=st.dictionaries(
    st.sampled_from([*KINDS, *(k.replace("_", "-") for k in KINDS), "command", "restart", "bogus"]),
    option_values, max_size=6,
))
def test_yaml_config_file(tmp_path: Path, doc: dict[str, Any]) -> None:
    """A config file: a Config or one ConfigError, whatever its keys and values."""
    doc.setdefault("command", PROG)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    fc = one_of_ours(lambda: read(str(path), KINDS), ConfigError)
    if fc is None:
        return
    options, _ = merge({}, set(), fc)
    config = one_of_ours(lambda: build(options, {"PATH": os.defpath}), ConfigError)
    if config is not None:
        assert config.command


@FUZZ
@given(text=st.one_of(
    st.text(max_size=120), st.text(alphabet="[]{}:-,'\"&*!|> \n\tab1", max_size=60)
))
def test_yaml_text(tmp_path: Path, text: str) -> None:
    """Any text as a config file: a FileConfig or one ConfigError."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    one_of_ours(lambda: read(str(path), KINDS), ConfigError)


texts = st.one_of(
    tricky_text,
    st.sampled_from(["127.0.0.1:0", "u0", "1", "0.5", "TERM", "1e400", "inf", "400M", "[::1]:0"]),
)
BY_KIND = {"list": st.lists(texts, max_size=3), "flag": st.none() | st.booleans(), "value": texts}


@st.composite
def option_sets(draw: st.DrawFn) -> dict[str, Any]:
    """Options as the command line or a config file hands them to ``build``."""
    names = draw(st.lists(st.sampled_from(sorted(KINDS)), max_size=6, unique=True))
    return {name: draw(BY_KIND[KINDS[name]]) for name in names}


@FUZZ
@given(options=option_sets(), environ=st.dictionaries(
    st.sampled_from(["KILL_OLD_DELAY", "AUTO_RESTART_INTERVAL", "ENABLE_AUTO_RESTART", "ENVDIR"]),
    tricky_text, max_size=3,
))
def test_option_sets(options: dict[str, Any], environ: dict[str, str]) -> None:
    """``build`` over any option values: a Config or one ConfigError."""
    options["command"] = PROG
    config = one_of_ours(lambda: build(options, {"PATH": os.defpath, **environ}), ConfigError)
    if config is not None:
        p = config.policy
        for number in (p.interval, p.ready_timeout, p.backoff_max, p.auto_restart_interval,
                       p.effective_kill_old_delay, config.timeout):
            assert math.isfinite(number) and 0 <= number <= MAX_SECONDS


# ---- LISTEN_FDS as systemd passes it ------------------------------------------------------


@FUZZ
@given(value=st.one_of(tricky_text, st.integers(min_value=-5, max_value=10**30).map(str)))
def test_listen_fds(value: str) -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": value}
    count = one_of_ours(lambda: sockets._listen_count(environ), sockets.BindError)
    if count is not None:
        assert 0 <= count <= 65536


# ---- SERVER_STARTER_PORT as an app reads it ------------------------------------------------


@FUZZ
@given(value=st.one_of(tricky_text, st.from_regex(r"\A([^;=]{0,8}=[0-9\uff13]{1,12};?){0,3}\Z")))
def test_server_starter_port(value: str) -> None:
    ports = one_of_ours(lambda: parse_port_env(value), ServerStarterError)
    if ports is not None:
        assert all(0 <= fd < 10**9 for fd in ports.values())

