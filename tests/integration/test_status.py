"""--status tells the truth: what serves, what starts, what failed and when it is retried."""

from __future__ import annotations

import json
import re
import signal

from support import APP, PY, Harness, free_port, gen_of, http_get, wait_until


def status(run: Harness) -> list[str]:
    r = run.run("--status", f"--pid-file={run.tmp / 'pid'}", f"--status-file={run.tmp / 'status'}")
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_status_after_a_broken_deploy(run: Harness) -> None:
    port = free_port()
    broken = run.tmp / "broken"
    # --interval=30: the retry is due long after the observation below.
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--pid-file={run.tmp / 'pid'}",
        f"--status-file={run.tmp / 'status'}", "--wait-ready", "--interval=30",
        "--", PY, APP, "--notify", f"--fail-if={broken}",
    )
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=20)
    lines = status(run)
    assert lines[0] == f"start_server pid {s.pid}: serving generation 1"
    assert lines[1].split() == [
        "GEN", "WORKER", "PID", "STATE", "READY", "UPTIME", "MEMORY", "FDS", "STATUS"
    ]
    # Memory is shown without --max-memory too (the client measures it).
    assert re.match(r"1\s+0\s+\d+\s+active\s+yes\s+\d+s\s+[\d.]+M\s+(\d+|-)$", lines[2]), lines
    assert len(lines) == 3, lines

    broken.touch()
    r = run.run("--restart", f"--pid-file={run.tmp / 'pid'}",
                f"--status-file={run.tmp / 'status'}")
    assert r.returncode == 1
    lines = status(run)
    assert lines[0] == f"start_server pid {s.pid}: serving generation 1", lines
    assert re.fullmatch(
        r"last failed: generation 2 \d+s ago: exited before it started \(exit code 3\)", lines[3]
    ), lines
    m = re.fullmatch(r"next attempt in (\d+)s", lines[4])
    assert m and 20 <= int(m.group(1)) <= 30, lines
    detail = json.loads((run.tmp / "status.json").read_text())
    assert detail["next_attempt_at"] > detail["failed_at"]
    assert gen_of(http_get(port)) == 1


def test_status_shows_a_starting_generation(run: Harness) -> None:
    port = free_port()
    envdir = run.tmp / "env"
    envdir.mkdir()
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--pid-file={run.tmp / 'pid'}",
        f"--status-file={run.tmp / 'status'}", "--wait-ready", "--ready-timeout=60",
        f"--envdir={envdir}", "--", PY, APP, "--notify",
    )
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=20)
    # Generation 2 is not ready for as long as the test looks.
    (envdir / "APP_EXTRA").write_text("--notify-delay=60")
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*starting new worker", timeout=20)
    lines = wait_until(lambda: (x := status(run)) and "generation 2" in x[0] and x,
                       what="generation 2 in --status", timeout=20)
    assert lines[0] == f"start_server pid {s.pid}: serving generation 1; generation 2 starting"
    assert re.match(r"1\s+0\s+\d+\s+active\s+yes\s+", lines[2]), lines
    assert re.match(r"2\s+0\s+\d+\s+starting\s+-\s+\d+s\s+", lines[3]), lines


def test_status_of_a_status_file_that_is_not_there(run: Harness) -> None:
    """A mistyped --status-file, or one removed under the starter, is not
    "nothing is serving": one line naming the option and the file, exit 1."""
    port = free_port()
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--pid-file={run.tmp / 'pid'}",
        f"--status-file={run.tmp / 'status'}", "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running", timeout=20)
    for args in ([], ["--json"]):
        wrong = run.tmp / "sttaus"
        r = run.run("--status", *args, f"--pid-file={run.tmp / 'pid'}", f"--status-file={wrong}")
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stdout == ""
        assert r.stderr == (f"start_server: --status-file={wrong}: there is no such file "
                            "(not written yet, or not the running starter's --status-file)\n")
    assert gen_of(http_get(port)) == 1
