"""The real ``start_server`` under generated option lists, environments and envdirs.

Each example either is refused (exit 2 or 1, one line on stderr, no traceback)
or runs, and then stops cleanly on TERM; either way nothing is left behind (no
process, no pid, status, JSON or socket file). Loopback only: a generated
``--port`` that would bind anything else is discarded before it runs. The
count is bounded (START_SERVER_CLI_FUZZ_EXAMPLES, default 20) and every wait
has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from support import PY, Harness, free_port, wait_until

from start_server.spec import parse_port
from start_server.values import SpecError

NUMBERS = ["0", "0.05", "0.3", "1", "2", "1e10", "1e400", "inf", "nan", "-1", "\uff11", "1_0",
           "", " 0.2 ", "99999999999", "0x10"]
COUNTS = ["1", "2", "0", "\uff12", "4097", "2147483648", "-3", "3 "]
SIGNALS = ["TERM", "usr1", "SIGQUIT", "9", "\u00b2", "", "NOPE", "99"]
SIZES = ["400M", "1", "\uff11G", "9" * 400, "0", "1.5G", "10T"]


@st.composite
def port_values(draw: st.DrawFn) -> str:
    """Loopback specs with noise in every part, and malformed ones."""
    port = free_port()
    host = draw(st.sampled_from(["127.0.0.1", "[127.0.0.1]", " [ 127.0.0.1]", "localhost",
                                 "[::1", "a..b", "a" * 300, "127.0.0.1 "]))
    fd = draw(st.sampled_from(["", "", "=0", "=3", "=5", " =6", "= 3", "=1", "=99999",
                               "=" + "9" * 20]))
    udp = draw(st.sampled_from(["", "u"]))
    return draw(st.sampled_from([
        f"{host}:{udp}{port}{fd}", f"{host}:{udp}{port}{fd}", f"{host}:{port}\uff10",
        "abc", "", f"{port}= 3",
    ]))


def _flag(name: str, values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.sampled_from(values).map(lambda v: [f"--{name}={v}"])


def option_lists(tmp: Path) -> st.SearchStrategy[list[str]]:
    fragments = st.one_of(
        port_values().map(lambda v: [f"--port={v}"]),
        st.sampled_from([f"{tmp}/s.sock", f"{tmp}/a;b.sock", f"{tmp}/" + "p" * 110, "rel.sock",
                         ""]).map(lambda v: [f"--path={v}"]),
        *(_flag(name, NUMBERS) for name in (
            "interval", "kill-old-delay", "stop-timeout", "ready-timeout", "backoff-max",
            "auto-restart-interval", "auto-restart-jitter", "memory-check-interval",
            "min-uptime", "timeout")),
        *(_flag(name, COUNTS) for name in ("workers", "backlog")),
        *(_flag(name, SIGNALS) for name in ("signal-on-hup", "signal-on-term")),
        _flag("max-memory", SIZES),
        st.sampled_from([["--wait-ready"], ["--enable-auto-restart"], ["--listen-fds"],
                         [f"--pid-file={tmp}/pid"], [f"--status-file={tmp}/status"],
                         [f"--log-file={tmp}/log"], [f"--envdir={tmp}/env"], [f"--dir={tmp}"],
                         ["--bogus"], ["--restart"]]),
    )
    return st.lists(fragments, max_size=6).map(lambda parts: [a for p in parts for a in p])


ENV_VALUES = st.sampled_from(["1", "0", "", "nan", "inf", "1e11", "-1", "0.1", "\uff15", "x\ny"])
ENVDIR_ENTRIES = st.dictionaries(
    st.sampled_from(["KILL_OLD_DELAY", "ENABLE_AUTO_RESTART", "AUTO_RESTART_INTERVAL", "APP_X"]),
    ENV_VALUES.map(lambda v: v + "\n"), max_size=3,
)
SPECIAL_ENTRIES = st.sampled_from([None, "fifo", "dev-zero"])


def _loopback_only(args: list[str]) -> None:
    """Discard an example that would bind anything but loopback."""
    for arg in args:
        if not arg.startswith("--port="):
            continue
        try:
            spec = parse_port(arg[len("--port="):])
        except SpecError:
            continue
        assume(spec.host in ("127.0.0.1", "::1", "localhost"))


def _make_envdir(tmp: Path, entries: dict[str, str], special: Optional[str]) -> None:
    env = tmp / "env"
    env.mkdir()
    for name, value in entries.items():
        (env / name).write_text(value)
    if special == "fifo":
        os.mkfifo(env / "FIFO")
    elif special == "dev-zero":
        (env / "ZERO").symlink_to("/dev/zero")


def _running(tmp: Path, err: Path) -> bool:
    """The starter got past its checks and its loop has spawned a worker."""
    text = err.read_text(errors="replace")
    log = tmp / "log"
    if log.exists():
        text += log.read_text(errors="replace")
    return "starting new worker" in text


def _check_outcome(run: Harness, tmp: Path, proc: subprocess.Popen[bytes], err: Path,
                   started: float) -> dict[str, Any]:
    """Wait for a refusal or a start, then TERM; return what happened."""
    deadline = started + 20
    while proc.poll() is None and not _running(tmp, err) and time.monotonic() < deadline:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.05)
    refused = proc.poll() is not None
    if not refused:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise AssertionError(f"the starter did not stop on TERM:\n{err.read_text()}") from None
    return {"refused": refused, "rc": proc.returncode}


@pytest.mark.timeout(600)
def test_cli_fuzz(run: Harness, tmp_path: Path) -> None:
    count = int(os.environ.get("START_SERVER_CLI_FUZZ_EXAMPLES", "20"))
    seen: list[int] = [0]
    tally: list[tuple[str, str]] = []

    @settings(
        max_examples=count, deadline=None, phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck), database=None,
    )
    @given(data=st.data())
    def example(data: st.DataObject) -> None:
        seen[0] += 1
        tmp = tmp_path / f"ex{seen[0]}"
        tmp.mkdir()
        args = data.draw(option_lists(tmp), label="options")
        _loopback_only(args)
        environ = data.draw(st.dictionaries(
            st.sampled_from(["KILL_OLD_DELAY", "ENABLE_AUTO_RESTART", "AUTO_RESTART_INTERVAL"]),
            ENV_VALUES, max_size=2), label="environment")
        _make_envdir(tmp, data.draw(ENVDIR_ENTRIES, label="envdir"),
                     data.draw(SPECIAL_ENTRIES, label="special envdir entry"))
        before = {str(p) for p in tmp.rglob("*")}
        err = tmp / "stderr"
        with open(err, "wb") as err_fh:
            started = time.monotonic()
            proc = subprocess.Popen(
                ["prlimit", f"--as={2 << 30}", "--", PY, "-m", "start_server", *args,
                 "--", "sleep", "600"],  # a server that says nothing: any traceback is ours
                env=run.env({k: v for k, v in environ.items() if "\n" not in v}),
                cwd=str(tmp), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err_fh, start_new_session=True,
            )
            outcome = _check_outcome(run, tmp, proc, err, started)
        stderr = err.read_text(errors="replace")
        tally.append(("ran" if not outcome["refused"] else f"exit {outcome['rc']}", stderr[:150]))
        log = (tmp / "log").read_text(errors="replace") if (tmp / "log").exists() else ""
        what = f"{args} env={environ}: {outcome}\n{stderr}{log}"
        assert "Traceback" not in stderr + log, what
        if outcome["refused"]:
            assert outcome["rc"] in (1, 2), what
            assert stderr.count("\n") == 1 and stderr.startswith("start_server: "), what
        else:
            assert outcome["rc"] in (0, 1, 2), what  # 1, 2: refused just as TERM came
        wait_until(lambda: not run.leftovers(), timeout=15, what=f"no process left: {what}")
        left = {str(p) for p in tmp.rglob("*")} - before - {str(err), str(tmp / "log")}
        assert not left, f"left behind: {left}; {what}"

    example()
    # Shown with -s, or when the test fails: what the examples came to.
    print("\n".join(f"{k}: {line.strip()}" for k, line in tally))
