"""Bad input: one clear line, a truthful exit code, and nothing left behind.

One table. Each row is a command line (with ``{placeholders}``), an optional
setup hook that makes the precondition (a port taken, a live unix socket, a
running starter holding the pid file ...), the exit code, and the start of
the one stderr line: ``start_server: --opt=value: why``. Every row also
proves that stdout is empty, that the starter did not even say "starting
now", that no file appeared in the watched directories (pid, status, .json,
unix socket, log) and that no process of the test was left running.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from support import APP, PY, Harness, free_port, read_status, wait_until

from start_server.reexec import STARTER

NOBODY = 65534
CMD = ("--", "{py}", "{app}")  # a server program that would run fine


class Ctx:
    """What a row's hooks see and set; ``vars`` fill the row's ``{placeholders}``."""

    def __init__(self, run: Harness, stack: ExitStack) -> None:
        self.run = run
        self.stack = stack
        self.cwd = run.tmp
        self.vars: dict[str, Any] = {
            "tmp": run.tmp,
            "py": PY,
            "app": APP,
            "port": free_port(),
            "port2": free_port(),
        }
        self.prefix: list[str] = []  # put before the interpreter (dropping privileges)
        self.python = PY
        self.entry = ["-m", "start_server"]  # what the interpreter runs
        self.pass_fds: tuple[int, ...] = ()
        self.extra_env: dict[str, str] = {}
        self.watched: list[Path] = [run.tmp]  # must hold nothing new afterwards
        self.checks: list[Callable[[], None]] = []  # run after the invocation

    def fmt(self, text: str) -> str:
        return text.format(**self.vars)

    def path(self, name: str) -> Path:
        return Path(self.fmt("{tmp}")) / name

    def invoke(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        env = {**self.extra_env, **env}
        if not self.prefix and self.python == PY and self.cwd == self.run.tmp and not self.pass_fds:
            return self.run.run(*args, env=env)
        return subprocess.run(
            [*self.prefix, self.python, *self.entry, *args],
            env=self.run.env(env), cwd=str(self.cwd), capture_output=True, text=True,
            timeout=30, stdin=subprocess.DEVNULL, check=False, pass_fds=self.pass_fds,
        )


# ---- setup hooks: one precondition each -----------------------------------------


def port_taken(ctx: Ctx) -> None:
    """Somebody else listens on {port}; {port2}, bound first by the starter, must be freed."""
    sock = ctx.stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    sock.bind(("127.0.0.1", ctx.vars["port"]))
    sock.listen()

    def port2_free_again() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", ctx.vars["port2"]))
            s.listen()

    ctx.checks.append(port2_free_again)


def _python_for_nobody(cwd: Path) -> tuple[str, dict[str, str]]:
    """An interpreter nobody may run that imports this very start_server (and click)."""
    import click

    import start_server

    ours = os.path.dirname(os.path.realpath(start_server.__file__))
    path = os.pathsep.join(
        os.path.dirname(os.path.dirname(os.path.realpath(m.__file__ or "")))
        for m in (start_server, click)
    )
    # The starter checks its command with access(2) as nobody: the path must pass that too.
    probe = (
        "import os, sys, click, start_server; assert os.access(sys.argv[1], os.X_OK); "
        "print(os.path.realpath(start_server.__file__))"
    )
    tried = []
    system = shutil.which("python3", path=os.defpath) or PY  # outside root's home, usually
    for python in dict.fromkeys([PY, os.path.realpath(PY), system]):
        for env in ({}, {"PYTHONPATH": path}):
            r = subprocess.run(
                [*_drop(), python, "-c", probe, python], env={**os.environ, **env}, cwd=str(cwd),
                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                check=False,
            )
            if r.returncode == 0 and os.path.dirname(r.stdout.strip()) == ours:
                return python, env
            tried.append(f"{python} {env}: rc={r.returncode} {r.stdout}{r.stderr}".strip())
    pytest.fail("no interpreter runs start_server as nobody:\n" + "\n".join(tried))


def _drop() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def unprivileged(ctx: Ctx) -> None:
    """Run the starter as nobody (we are root here) in a directory nobody owns."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start == 0:
        pytest.skip("this kernel has no privileged ports (ip_unprivileged_port_start=0)")
    ctx.vars["lowport"] = start - 1
    if os.geteuid() != 0:
        return  # already unprivileged
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop to nobody"
    home = Path(tempfile.mkdtemp(prefix="start_server-nobody-"))
    ctx.stack.callback(shutil.rmtree, home, ignore_errors=True)
    os.chown(home, NOBODY, NOBODY)
    ctx.vars["tmp"] = home
    ctx.cwd = home
    ctx.watched.append(home)
    ctx.prefix = _drop()
    ctx.python, ctx.extra_env = _python_for_nobody(home)
    ctx.vars["py"] = ctx.python  # the server program, too, must be one nobody can run


def live_unix_socket(ctx: Ctx) -> None:
    """The test serves on {tmp}/live.sock; it must still be there and still ours."""
    path = ctx.path("live.sock")
    server = ctx.stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    server.bind(str(path))
    server.listen()
    server.settimeout(10)
    ino = path.stat().st_ino

    def still_ours() -> None:
        assert path.stat().st_ino == ino, "the live socket file was replaced"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(str(path))
            conn, _ = server.accept()
            conn.close()

    ctx.checks.append(still_ours)


def regular_file(ctx: Ctx) -> None:
    """{tmp}/plain is a regular file with content that must survive."""
    plain = ctx.path("plain")
    plain.write_text("keep me\n")
    ctx.checks.append(lambda: _assert_text(plain, "keep me\n"))


def not_executable(ctx: Ctx) -> None:
    script = ctx.path("script.sh")
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)


def dead_pid(ctx: Ctx) -> None:
    """{tmp}/pid names a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait(10)
    ctx.vars["dead"] = proc.pid
    ctx.path("pid").write_text(f"{proc.pid}\n")
    ctx.path("status").write_text(f"1:{proc.pid}\n")


def empty_pid(ctx: Ctx) -> None:
    """{tmp}/pid is empty and nobody holds it (a starter that died before writing)."""
    ctx.path("pid").write_text("")
    ctx.path("status").write_text("")


def stale_pid_of_bystander(ctx: Ctx) -> None:
    """{tmp}/pid names a live process that is no starter: it must not be signalled."""
    bystander = subprocess.Popen(
        [PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
        env=ctx.run.env(),
    )

    def reap() -> None:
        if bystander.poll() is None:
            bystander.kill()
        bystander.wait(10)
        assert bystander.stdin is not None
        bystander.stdin.close()

    ctx.stack.callback(reap)
    ctx.vars["bystander"] = bystander.pid
    ctx.path("pid").write_text(f"{bystander.pid}\n")
    ctx.path("status").write_text(f"1:{bystander.pid}\n")

    def not_signalled() -> None:
        assert bystander.stdin is not None
        bystander.stdin.close()
        assert bystander.wait(10) == 0, "the bystander was signalled"

    ctx.checks.append(not_signalled)


def envdir_file(ctx: Ctx) -> None:
    ctx.path("envfile").write_text("not a directory\n")


def running_starter(ctx: Ctx) -> None:
    """A starter serves with {tmp}/pid and {tmp}/status; the second must not touch them."""
    pid_file, status = ctx.path("pid"), ctx.path("status")
    first = ctx.run.start(
        f"--pid-file={pid_file}", f"--status-file={status}",
        f"--port=127.0.0.1:{ctx.vars['port2']}", "--interval=0.1", "--", PY, APP,
    )
    first.wait_line(r"gen=1 .*is now running")

    def published() -> bool:
        detail = json.loads(Path(f"{status}.json").read_text())
        return [g["state"] for g in detail["generations"]] == ["active"]

    wait_until(published, what="the first starter's status to settle")
    gens = read_status(status)
    ctx.vars["first"] = first.pid

    def intact() -> None:
        assert first.proc.poll() is None, "the first starter died"
        _assert_text(pid_file, f"{first.pid}\n")
        assert read_status(status) == gens

    ctx.checks.append(intact)


def symlinks_to_victim(ctx: Ctx) -> None:
    """{tmp}/pid and {tmp}/log are symlinks to {tmp}/victim, which must stay as it is."""
    victim = ctx.path("victim")
    victim.write_text("keep me\n")
    for name in ("pid", "log"):
        ctx.path(name).symlink_to(victim)
    ctx.checks.append(lambda: _assert_text(victim, "keep me\n"))


def low_nofile(ctx: Ctx) -> None:
    """The starter runs with an open-files limit of 256."""
    ctx.prefix = ["prlimit", "--nofile=256:256", "--"]


def handed_over(text: str) -> Callable[[Ctx], None]:
    """The lean process (reexec.py) started with ``text`` as its hand-over,
    ``{handover}`` its option (``--hand-over=FD``); empty text: an fd not open."""

    def setup(ctx: Ctx) -> None:
        if text:
            fd = os.memfd_create("hand-over", 0)
            ctx.stack.callback(os.close, fd)
            os.write(fd, ctx.fmt(text).encode())
            os.lseek(fd, 0, os.SEEK_SET)
            ctx.pass_fds = (fd,)
        else:
            fd = 1000
            ctx.pass_fds = (os.open(os.devnull, os.O_RDONLY),)  # not passed as 1000
            ctx.stack.callback(os.close, ctx.pass_fds[0])
        ctx.vars["handover"] = f"--hand-over={fd}"
        ctx.entry = ["-S", STARTER, ctx.vars["handover"]]

    return setup


def pid_file_holding(text: bytes) -> Callable[[Ctx], None]:
    """{tmp}/pid holds ``text``; {tmp}/status one generation of a live process (ours)."""

    def setup(ctx: Ctx) -> None:
        ctx.path("pid").write_bytes(text)
        ctx.path("status").write_text(f"1:{os.getpid()}\n")

    return setup


def pid_file_fifo(ctx: Ctx) -> None:
    """{tmp}/pid is a FIFO nobody writes: reading it must not hang."""
    os.mkfifo(ctx.path("pid"))
    ctx.path("status").write_text(f"1:{os.getpid()}\n")


def config_file(text: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.path("conf.yaml").write_text(ctx.fmt(text))

    return setup



def hard_links_to_victim(ctx: Ctx) -> None:
    """{tmp}/pid and {tmp}/log are hard links of files that must stay as they are."""
    for name in ("pid", "log"):
        victim = ctx.path(f"victim-{name}")
        victim.write_text("keep me\n")
        os.link(victim, ctx.path(name))
        ctx.checks.append(functools.partial(_assert_text, victim, "keep me\n"))


def _assert_text(path: Path, text: str) -> None:
    assert path.read_text() == text, f"{path} was changed"


# ---- the table --------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]
    code: int
    head: str  # the line starts with "start_server: " + head (option=value and ':')
    why: str = ""  # and says this somewhere after it
    env: dict[str, str] = field(default_factory=dict)
    setup: Optional[Callable[[Ctx], None]] = None


ROWS = [
    # -- the --port grammar
    Row("port-malformed", ("--port=abc", *CMD), 2, "--port=abc:", "invalid port spec"),
    # Brackets may hold an IPv4 address or a name, as in the original; the
    # original's greedy host keeps a blank before "]", which no address has.
    Row("port-blank-in-brackets", ("--port=[ ::1 ]:{port}", *CMD), 2,
        "--port=[ ::1 ]:{port}:", "invalid IPv6 address '::1 '"),
    Row("port-blank-after-equals", ("--port=127.0.0.1:{port}= 5", *CMD), 2,
        "--port=127.0.0.1:{port}= 5:", "invalid port spec"),
    Row("port-fullwidth-digits", ("--port=\uff18\uff10\uff18\uff10", *CMD), 2,
        "--port=\uff18\uff10\uff18\uff10:", "invalid port spec"),
    Row("port-ipv6-scope-id", ("--port=[fe80::1%lo]:{port}", *CMD), 2,
        "--port=[fe80::1%lo]:{port}:", "invalid IPv6 address"),
    Row("port-fd-overflow", ("--port=127.0.0.1:{port}=99999999999999999999", *CMD), 2,
        "--port=127.0.0.1:{port}=99999999999999999999:", "out of range"),
    Row("port-fd-above-open-files-limit", ("--port=127.0.0.1:{port}=99999", *CMD), 1,
        "--port=127.0.0.1:{port}=99999:", "open-files limit is 256", setup=low_nofile),
    Row("host-label-too-long", ("--port=" + "a" * 300 + ":{port}", *CMD), 1,
        "--port=" + "a" * 300 + ":{port}:", "cannot resolve host"),
    Row("host-empty-label", ("--port=a..b:{port}", *CMD), 1,
        "--port=a..b:{port}:", "cannot resolve host"),
    Row("port-udp-twice", ("--port=127.0.0.1:u{port}", "--port=127.0.0.1:u{port}", *CMD), 2,
        "--port=127.0.0.1:u{port}:", "the same socket as --port=127.0.0.1:u{port}"),
    Row("port-twice-spelt-differently", ("--port=u{port}", "--port=0.0.0.0:u{port}", *CMD), 2,
        "--port=0.0.0.0:u{port}:", "the same socket as --port=u{port}"),
    Row("port-empty", ("--port=", *CMD), 2, "--port=:", "invalid port spec"),
    Row("port-out-of-range", ("--port=70000", *CMD), 2, "--port=70000:", "out of range"),
    Row("host-port-out-of-range", ("--port=127.0.0.1:99999", *CMD), 2,
        "--port=127.0.0.1:99999:", "out of range"),
    Row("port-fd-collision",
        ("--port=127.0.0.1:{port}=5", "--port=127.0.0.1:{port2}=5", *CMD), 2,
        "--port=127.0.0.1:{port2}=5:", "fd 5"),
    Row("port-fd-is-stderr", ("--port=127.0.0.1:{port}=2", *CMD), 2,
        "--port=127.0.0.1:{port}=2:", "stderr"),
    # -- signal names
    Row("signal-on-hup-unknown", ("--signal-on-hup=FOO", *CMD), 2,
        "--signal-on-hup=FOO:", "unknown signal"),
    Row("signal-on-term-unknown", ("--signal-on-term=SIGBAR", *CMD), 2,
        "--signal-on-term=SIGBAR:", "unknown signal"),
    Row("signal-on-term-bad-number", ("--signal-on-term=99", *CMD), 2,
        "--signal-on-term=99:", "unknown signal"),
    Row("signal-on-hup-empty", ("--signal-on-hup=", *CMD), 2,
        "--signal-on-hup=:", "unknown signal"),
    # -- numbers
    Row("interval-negative", ("--interval=-1", *CMD), 2, "--interval=-1:", ">= 0"),
    Row("interval-not-a-number", ("--interval=abc", *CMD), 2, "--interval=abc:", "not a number"),
    Row("interval-empty", ("--interval=", *CMD), 2, "--interval=:", "not a number"),
    Row("interval-huge", ("--interval=1e10", *CMD), 2, "--interval=1e10:", "<= 31536000"),
    Row("interval-fullwidth", ("--interval=\uff11", *CMD), 2,
        "--interval=\uff11:", "not a number"),
    Row("interval-underscore", ("--interval=1_0", *CMD), 2, "--interval=1_0:", "not a number"),
    Row("stop-timeout-huge", ("--stop-timeout=1e300", *CMD), 2,
        "--stop-timeout=1e300:", "(one year)"),
    Row("ready-timeout-huge", ("--ready-timeout=1e300", "--wait-ready", *CMD), 2,
        "--ready-timeout=1e300:", "(one year)"),
    Row("kill-old-delay-huge", ("--kill-old-delay=99999999999", *CMD), 2,
        "--kill-old-delay=99999999999:", "(one year)"),
    Row("KILL_OLD_DELAY-env-inf", CMD, 2, "KILL_OLD_DELAY=inf:", "not a number",
        env={"KILL_OLD_DELAY": "inf"}),
    Row("AUTO_RESTART_INTERVAL-env-huge", CMD, 2, "AUTO_RESTART_INTERVAL=1e300:", "(one year)",
        env={"AUTO_RESTART_INTERVAL": "1e300"}),
    Row("memory-check-interval-huge", ("--memory-check-interval=1e400", *CMD), 2,
        "--memory-check-interval=1e400:", "(one year)"),
    Row("max-memory-overflow", ("--max-memory=" + "9" * 400, *CMD), 2,
        "--max-memory=" + "9" * 400 + ":", "size must be <= 1P"),
    Row("max-memory-fullwidth", ("--max-memory=\uff11G", *CMD), 2,
        "--max-memory=\uff11G:", "not a size"),
    Row("workers-fullwidth", ("--workers=\uff12", *CMD), 2, "--workers=\uff12:", "not a whole"),
    Row("workers-too-many", ("--workers=100000", *CMD), 2, "--workers=100000:", "<= 4096"),
    Row("rolling-zero", ("--workers=2", "--rolling=0", *CMD), 2, "--rolling=0:", ">= 1"),
    Row("rolling-negative", ("--rolling=-1", *CMD), 2, "--rolling=-1:", ">= 1"),
    Row("rolling-not-a-number", ("--rolling=two", *CMD), 2, "--rolling=two:", "not a whole"),
    Row("rolling-too-many", ("--rolling=5000", *CMD), 2, "--rolling=5000:", "<= 4096"),
    Row("rolling-program-as-value", ("--rolling", "{py}", "{app}"), 2, "--rolling=", "not a whole"),
    Row("signal-superscript-digit", ("--signal-on-hup=\u00b2", *CMD), 2,
        "--signal-on-hup=\u00b2:", "unknown signal"),
    Row("kill-old-delay-negative", ("--kill-old-delay=-2", *CMD), 2,
        "--kill-old-delay=-2:", ">= 0"),
    Row("kill-old-delay-not-a-number", ("--kill-old-delay=soon", *CMD), 2,
        "--kill-old-delay=soon:", "not a number"),
    Row("KILL_OLD_DELAY-env-not-a-number", CMD, 2, "KILL_OLD_DELAY=soon:", "not a number",
        env={"KILL_OLD_DELAY": "soon"}),
    Row("auto-restart-interval-negative", ("--auto-restart-interval=-5", *CMD), 2,
        "--auto-restart-interval=-5:", "> 0"),
    Row("auto-restart-interval-zero", ("--auto-restart-interval=0", *CMD), 2,
        "--auto-restart-interval=0:", "> 0"),
    Row("auto-restart-interval-not-a-number", ("--auto-restart-interval=1h", *CMD), 2,
        "--auto-restart-interval=1h:", "not a number"),
    Row("AUTO_RESTART_INTERVAL-env-negative", CMD, 2, "AUTO_RESTART_INTERVAL=-1:", "> 0",
        env={"AUTO_RESTART_INTERVAL": "-1"}),
    # -- the lean re-exec's hand-over (reexec.py, handover.py), damaged or made by hand
    Row("hand-over-not-json", CMD, 2, "{handover}:", "not a hand-over from start_server",
        setup=handed_over("garbage")),
    Row("hand-over-empty-object", CMD, 2, "{handover}:", "not a hand-over from start_server",
        setup=handed_over("{{}}")),
    Row("hand-over-unknown-format", CMD, 2, "{handover}:",
        "hand-over format 99 is not one this start_server reads (1)",
        setup=handed_over('{{"format": 99, "kind": "options"}}')),
    Row("hand-over-other-kind", CMD, 2, "{handover}:",
        "a hand-over of kind 'other', not options or state",
        setup=handed_over('{{"format": 1, "kind": "other"}}')),
    Row("hand-over-state-without-options", CMD, 2, "{handover}:", "not a hand-over of options",
        setup=handed_over('{{"format": 1, "kind": "state", "path": []}}')),
    Row("hand-over-no-options", CMD, 2, "{handover}:", "not a hand-over of options",
        setup=handed_over('{{"format": 1, "kind": "options", "path": []}}')),
    Row("hand-over-fd-not-open", CMD, 2, "{handover}:", "cannot read the hand-over",
        setup=handed_over("")),
    Row("hand-over-bad-option", (), 2, "--port=abc:", "invalid port spec",
        setup=handed_over('{{"format": 1, "kind": "options", "options": {{"port": ["abc"], '
                          '"command": ["{py}", "{app}"]}}, "path": []}}')),
    Row("min-uptime-negative", ("--min-uptime=-1", *CMD), 2, "--min-uptime=-1:", ">= 0"),
    Row("min-uptime-not-a-number", ("--min-uptime=1m", *CMD), 2,
        "--min-uptime=1m:", "not a number"),
    Row("min-uptime-empty", ("--min-uptime=", *CMD), 2, "--min-uptime=:", "not a number"),
    Row("min-uptime-infinite", ("--min-uptime=inf", *CMD), 2, "--min-uptime=inf:", "not a number"),
    Row("backlog-negative", ("--backlog=-1", *CMD), 2, "--backlog=-1:", ">= 1"),
    Row("backlog-zero", ("--backlog=0", *CMD), 2, "--backlog=0:", ">= 1"),
    Row("backlog-not-a-number", ("--backlog=many", *CMD), 2,
        "--backlog=many:", "not a whole number"),
    Row("max-open-files-zero", ("--max-open-files=0", *CMD), 2,
        "--max-open-files=0:", ">= 1"),
    Row("max-open-files-not-a-number", ("--max-open-files=lots", *CMD), 2,
        "--max-open-files=lots:", "not a whole number"),
    Row("max-fd-fraction-zero", ("--max-fd-fraction=0", *CMD), 2,
        "--max-fd-fraction=0:", "must be > 0 and <= 1"),
    Row("max-fd-fraction-over-one", ("--max-fd-fraction=1.5", *CMD), 2,
        "--max-fd-fraction=1.5:", "must be > 0 and <= 1"),
    Row("max-fd-fraction-nan", ("--max-fd-fraction=nan", *CMD), 2,
        "--max-fd-fraction=nan:", "not a fraction"),
    Row("max-fd-fraction-not-a-number", ("--max-fd-fraction=half", *CMD), 2,
        "--max-fd-fraction=half:", "not a fraction"),
    Row("health-check-interval-zero", ("--health-check-interval=0", *CMD), 2,
        "--health-check-interval=0:", "> 0"),
    Row("memory-check-interval-not-a-number", ("--memory-check-interval=abc", *CMD), 2,
        "--memory-check-interval=abc:", "not a number"),
    Row("health-check-interval-under-both-names",
        ("--health-check-interval=1", "--memory-check-interval=2", *CMD), 2,
        "--memory-check-interval=2:", "the old name of --health-check-interval"),
    Row("backlog-over-c-int", ("--backlog=2147483648", *CMD), 2,
        "--backlog=2147483648:", "<= 2147483647"),
    Row("timeout-negative", ("--timeout=-1", *CMD), 2, "--timeout=-1:", "> 0"),
    Row("timeout-not-a-number", ("--stop", "--pid-file={tmp}/pid", "--timeout=abc"), 2,
        "--timeout=abc:", "not a number"),
    Row("status-file-is-a-directory", ("--status-file={tmp}", *CMD), 2,
        "--status-file={tmp}:", "is a directory"),
    Row("pid-file-is-a-directory", ("--pid-file={tmp}", *CMD), 2,
        "--pid-file={tmp}:", "is a directory"),
    Row("log-file-is-a-directory", ("--log-file={tmp}", *CMD), 2,
        "--log-file={tmp}:", "is a directory"),
    # -- options that need other options
    Row("daemonize-without-log-file", ("--daemonize", *CMD), 2,
        "--daemonize:", "requires --log-file"),
    Row("restart-without-files", ("--restart",), 2,
        "--restart:", "requires --pid-file and --status-file"),
    Row("restart-without-status-file", ("--restart", "--pid-file={tmp}/pid"), 2,
        "--restart:", "--status-file"),
    Row("stop-without-pid-file", ("--stop",), 2, "--stop:", "requires --pid-file"),
    Row("upgrade-without-files", ("--upgrade",), 2,
        "--upgrade:", "requires --pid-file and --status-file"),
    Row("upgrade-without-status-file", ("--upgrade", "--pid-file={tmp}/pid"), 2,
        "--upgrade:", "--status-file"),
    Row("watch-without-status", ("--watch", "--pid-file={tmp}/pid", "--status-file={tmp}/status"),
        2, "--watch:", "only with --status"),
    Row("watch-with-restart",
        ("--restart", "--watch", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--watch:", "only with --status"),
    # -- --scale and --restart --worker: the value, its company, the running count
    Row("scale-without-files", ("--scale=3",), 2,
        "--scale:", "requires --pid-file and --status-file"),
    *(
        Row(f"scale-{case}", (f"--scale={value}", "--pid-file={tmp}/pid",
                              "--status-file={tmp}/status"), 2, f"--scale={value}:", why)
        for case, value, why in (
            ("not-a-count", "many", "not a count: 'many' (expected N, +K or -K)"),
            ("zero", "0", "must be >= 1, got '0'"),
            ("minus-zero", "-0", "must be >= 1, got '0'"),
            ("over-the-maximum", "4097", "must be <= 4096, got '4097'"),
            ("fraction", "1.5", "not a count"),
            ("empty", "", "not a count"),
        )
    ),
    Row("scale-with-restart",
        ("--restart", "--scale=2", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--scale:", "not with --restart"),
    Row("worker-without-restart",
        ("--worker=1", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--worker=1:", "only with --restart"),
    Row("worker-with-scale",
        ("--scale=3", "--worker=1", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--worker=1:", "only with --restart"),
    Row("worker-with-status",
        ("--status", "--worker=1", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--worker=1:", "only with --restart"),
    Row("worker-not-a-number",
        ("--restart", "--worker=two", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--worker=two:", "not a whole number"),
    Row("worker-negative",
        ("--restart", "--worker=-1", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--worker=-1:", "must be >= 0"),
    Row("scale-below-one-for-the-running-count",
        ("--scale=-1", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--scale=-1:", "0 workers is out of range (1..4096; 1 now)", setup=running_starter),
    Row("worker-out-of-range-for-the-running-count",
        ("--restart", "--worker=1", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 2,
        "--worker=1:", "there is no worker 1 (workers 0..0)", setup=running_starter),
    # -- client modes and a pid file that names no starter: the same words for each
    *(
        Row(f"{mode}-{case}", (f"--{mode}", "--pid-file={tmp}/pid", "--status-file={tmp}/status"),
            1, "--pid-file={tmp}/pid:", f"no start_server is running with this pid file ({why}",
            setup=setup)
        for mode in ("restart", "stop", "status", "upgrade")
        for case, why, setup in (
            ("missing-pid-file", "there is no such file)", None),
            ("empty-pid-file", "it has no pid in it)", empty_pid),
            ("dead-pid", "it names pid {dead}, which is not running)", dead_pid),
            ("stale-pid-of-bystander",
             "it names pid {bystander}, but nothing holds its lock", stale_pid_of_bystander),
        )
    ),
    # -- a pid file is untrusted input: no traceback, no signal to a stranger
    Row("stop-pid-file-superscript", ("--stop", "--pid-file={tmp}/pid"), 1,
        "--pid-file={tmp}/pid:", "no pid in it", setup=pid_file_holding("\u00b2\n".encode())),
    Row("restart-pid-file-superscript",
        ("--restart", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 1,
        "--pid-file={tmp}/pid:", "no pid in it", setup=pid_file_holding("\u00b2\n".encode())),
    Row("status-pid-file-fullwidth-one",
        ("--status", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 1,
        "--pid-file={tmp}/pid:", "no pid in it", setup=pid_file_holding("\uff11\n".encode())),
    Row("stop-pid-file-huge", ("--stop", "--pid-file={tmp}/pid"), 1,
        "--pid-file={tmp}/pid:", "no pid in it", setup=pid_file_holding(b"9" * 20 + b"\n")),
    Row("restart-pid-file-over-c-int",
        ("--restart", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 1,
        "--pid-file={tmp}/pid:", "no pid in it", setup=pid_file_holding(b"4294967297\n")),
    Row("status-pid-file-not-utf8",
        ("--status", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 1,
        "--pid-file={tmp}/pid:", "no pid in it", setup=pid_file_holding(b"\xff\xfe1\n")),
    Row("stop-pid-file-fifo", ("--stop", "--pid-file={tmp}/pid"), 1,
        "--pid-file={tmp}/pid:", "not a regular file", setup=pid_file_fifo),
    Row("restart-pid-file-fifo",
        ("--restart", "--pid-file={tmp}/pid", "--status-file={tmp}/status"), 1,
        "--pid-file={tmp}/pid:", "not a regular file", setup=pid_file_fifo),
    # -- the system says no
    Row("port-in-use",
        ("--port=127.0.0.1:{port2}", "--port=127.0.0.1:{port}", "--pid-file={tmp}/pid",
         "--status-file={tmp}/status", "--log-file={tmp}/log", *CMD), 1,
        "--port=127.0.0.1:{port}:", "in use", setup=port_taken),
    Row("privileged-port-unprivileged",
        ("--port=127.0.0.1:{lowport}", "--pid-file={tmp}/pid", "--status-file={tmp}/status",
         *CMD), 1,
        "--port=127.0.0.1:{lowport}:", "Permission denied", setup=unprivileged),
    Row("pid-file-locked-by-running-starter",
        ("--pid-file={tmp}/pid", "--status-file={tmp}/status2", "--path={tmp}/s2.sock",
         "--port=127.0.0.1:{port}", *CMD), 1,
        "--pid-file={tmp}/pid:", "locked by a running start_server (pid {first})",
        setup=running_starter),
    # -- --path
    Row("path-missing-directory", ("--path={tmp}/nowhere/app.sock", *CMD), 2,
        "--path={tmp}/nowhere/app.sock:", "does not exist"),
    Row("path-regular-file", ("--path={tmp}/plain", *CMD), 2,
        "--path={tmp}/plain:", "not a socket", setup=regular_file),
    Row("path-semicolon", ("--path={tmp}/a;b.sock", *CMD), 2,
        "--path={tmp}/a;b.sock:", "would corrupt SERVER_STARTER_PORT"),
    Row("path-equals", ("--path={tmp}/a=b.sock", *CMD), 2,
        "--path={tmp}/a=b.sock:", "would corrupt SERVER_STARTER_PORT"),
    Row("path-too-long", ("--path={tmp}/" + "s" * 120, *CMD), 2,
        "--path={tmp}/" + "s" * 120 + ":", "a unix socket path holds at most 107"),
    Row("path-twice", ("--path={tmp}/s.sock", "--path={tmp}/./s.sock", *CMD), 2,
        "--path={tmp}/./s.sock:", "the same socket as --path={tmp}/s.sock"),
    Row("path-same-key-as-port", ("--port={port}", "--path={port}", *CMD), 2,
        "--path={port}:", "the same key in SERVER_STARTER_PORT as --port={port}"),
    Row("path-nul-from-config", ("--config={tmp}/conf.yaml",), 2,
        "--config={tmp}/conf.yaml:1:", "not a valid string",
        setup=config_file('path: "{tmp}/a\\0b"\ncommand: ["{py}", "{app}"]\n')),
    Row("path-live-socket",
        ("--path={tmp}/mine.sock", "--path={tmp}/live.sock", "--pid-file={tmp}/pid", *CMD), 1,
        "--path={tmp}/live.sock:", "live server", setup=live_unix_socket),
    # -- files and directories
    Row("pid-file-missing-directory", ("--pid-file={tmp}/nowhere/pid", *CMD), 2,
        "--pid-file={tmp}/nowhere/pid:", "does not exist"),
    Row("log-file-missing-directory", ("--log-file={tmp}/nowhere/log", *CMD), 2,
        "--log-file={tmp}/nowhere/log:", "does not exist"),
    Row("dir-missing", ("--dir={tmp}/nowhere", *CMD), 2,
        "--dir={tmp}/nowhere:", "not a directory"),
    Row("envdir-not-a-directory", ("--envdir={tmp}/envfile", *CMD), 2,
        "--envdir={tmp}/envfile:", "not a directory", setup=envdir_file),
    Row("ENVDIR-env-not-a-directory", CMD, 2, "ENVDIR={tmp}/envfile:", "not a directory",
        env={"ENVDIR": "{tmp}/envfile"}, setup=envdir_file),
    Row("pid-file-is-a-symlink", ("--pid-file={tmp}/pid", *CMD), 1,
        "--pid-file={tmp}/pid:", "is a symbolic link; refusing to follow it",
        setup=symlinks_to_victim),
    Row("log-file-is-a-symlink", ("--log-file={tmp}/log", *CMD), 1,
        "--log-file={tmp}/log:", "is a symbolic link; refusing to follow it",
        setup=symlinks_to_victim),
    Row("pid-file-is-a-hard-link", ("--pid-file={tmp}/pid", *CMD), 1,
        "--pid-file={tmp}/pid:", "has 2 hard links; refusing to write to it",
        setup=hard_links_to_victim),
    Row("log-file-is-a-hard-link", ("--log-file={tmp}/log", *CMD), 1,
        "--log-file={tmp}/log:", "has 2 hard links; refusing to write to it",
        setup=hard_links_to_victim),
    # -- --user, --group
    Row("user-unknown", ("--user=no-such-user-b4d", *CMD), 2,
        "--user=no-such-user-b4d:", "no such user"),
    Row("user-unknown-uid", ("--user=3999999999", *CMD), 2,
        "--user=3999999999:", "no such user"),
    Row("user-empty", ("--user=", *CMD), 2, "--user=:", "no such user"),
    Row("group-unknown", ("--group=no-such-group-b4d", *CMD), 2,
        "--group=no-such-group-b4d:", "no such group"),
    Row("user-other-without-root", ("--port=127.0.0.1:{port}", "--user=root", *CMD), 2,
        "--user=root:", "only root can run the workers as another user",
        setup=unprivileged),
    Row("group-other-without-root", ("--port=127.0.0.1:{port}", "--group=root", *CMD), 2,
        "--group=root:", "only root can run the workers in another group",
        setup=unprivileged),
    # -- the server program
    Row("no-command", ("--port=127.0.0.1:{port}",), 2, "server program not specified"),
    Row("command-not-found", ("--", "no-such-program-b4d1nput"), 2,
        "command 'no-such-program-b4d1nput':", "not found"),
    Row("command-not-executable", ("--", "{tmp}/script.sh"), 2,
        "command '{tmp}/script.sh':", "not an executable", setup=not_executable),
    Row("command-is-a-directory", ("--", "{tmp}"), 2,
        "command '{tmp}':", "not an executable"),
    # -- click's own usage errors
    Row("unknown-option", ("--bogus=1", *CMD), 2, "--bogus:", "no such option"),
    Row("misspelt-option", ("--intervl=1", *CMD), 2, "--intervl:", "did you mean --interval"),
]


def _tree(dirs: list[Path]) -> set[str]:
    return {str(p) for d in dirs for p in d.rglob("*")}


@pytest.fixture
def ctx(run: Harness) -> Iterator[Ctx]:
    with ExitStack() as stack:
        yield Ctx(run, stack)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(ctx: Ctx, row: Row) -> None:
    if row.setup is not None:
        row.setup(ctx)
    args = [ctx.fmt(a) for a in row.args]
    env = {k: ctx.fmt(v) for k, v in row.env.items()}
    files_before = _tree(ctx.watched)
    procs_before = set(ctx.run.leftovers())

    r = ctx.invoke(args, env)

    line = r.stderr.rstrip("\n")
    assert r.stderr == line + "\n" and "\n" not in line, f"not one line:\n{r.stderr}"
    assert line.startswith(f"start_server: {ctx.fmt(row.head)}"), line
    assert ctx.fmt(row.why) in line, line
    assert "starting now" not in r.stderr
    assert r.stdout == ""
    assert r.returncode == row.code, line
    assert _tree(ctx.watched) - files_before == set(), "files left behind"
    assert set(ctx.run.leftovers()) - procs_before == set(), "processes left behind"
    for check in ctx.checks:
        check()
