"""Crash backoff of the real starter: a start resets the count, a serving crash is no loop."""

from __future__ import annotations

import os
import signal
import time

from support import APP, PY, Harness, free_port, gen_of, http_get, log_time, wait_until


def test_a_start_resets_the_failed_starts_count(run: Harness) -> None:
    """Generation 1 fails, 2 serves, 3 fails after a HUP: the first failure in a row again."""
    port = free_port()
    broken = run.tmp / "broken"
    broken.touch()
    # --interval=2 is the delay before a retry: time enough to repair the deploy.
    s = run.start(
        f"--port=127.0.0.1:{port}", "--wait-ready", "--interval=2", "--", PY, APP, "--notify",
        f"--fail-if={broken}",
    )
    s.wait_line(r"gen=1 .*failed to start")
    s.wait_line(r"next attempt in [\d.]+ s \(failed starts in a row: 1\)")
    broken.unlink()
    s.wait_line(r"gen=2 .*is now running \(ready\)")
    assert gen_of(http_get(port)) == 2
    broken.touch()
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=3 .*failed to start", start=mark)
    m = s.wait_line(r"next attempt in [\d.]+ s \(failed starts in a row: (\d+)\)", start=mark)
    assert m.group(1) == "1", "the count of failed starts survived generation 2's start"
    assert gen_of(http_get(port)) == 2


def test_serving_worker_killed_after_min_uptime_is_respawned_at_once_every_time(
    run: Harness,
) -> None:
    """SIGKILL of the serving worker, each time after its successor ran > --min-uptime:
    every respawn is immediate, the backoff never applies (the original's behaviour)."""
    port = free_port()
    s = run.start(
        f"--port=127.0.0.1:{port}", "--wait-ready", "--min-uptime=0.3", "--backoff-max=30",
        "--", PY, APP, "--notify",
    )
    for n in range(1, 7):
        m = s.wait_line(rf"gen={n} pid=(\d+) .*is now running \(ready\)")
        pid = int(m.group(1))
        # Observation window: the worker serves well past --min-uptime after its start.
        seen = time.monotonic()
        while time.monotonic() - seen < 0.5:
            assert gen_of(http_get(port)) == n
        mark = s.mark()
        os.kill(pid, signal.SIGKILL)
        s.wait_line(rf"gen={n} pid={pid} .*died unexpectedly with .*SIGKILL.*restarting",
                    start=mark)
        s.wait_line(rf"gen={n + 1} pid=\d+ .*starting new worker", start=mark)
        assert "next attempt" not in "\n".join(s.lines[mark:]), s.output
    assert "crashes in a row" not in s.output


def test_interval_zero_backs_off_instead_of_a_busy_loop(run: Harness) -> None:
    """--interval=0 and a command that exits at once: the retries back off
    (from a floor) instead of spawning as fast as the machine can; a fixed
    deploy sent with HUP still starts at once, whatever the backoff."""
    port = free_port()
    broken = run.tmp / "broken"
    broken.touch()
    script = run.tmp / "app.sh"
    script.write_text(f"#!/bin/sh\n[ -e {broken} ] && exit 1\nexec {PY} {APP}\n")
    script.chmod(0o755)
    s = run.start(f"--port=127.0.0.1:{port}", "--interval=0", "--", str(script))
    s.wait_line(r"gen=1 .*starting new worker")
    # Observation window: how many attempts 2 s of a command that exits at once make.
    time.sleep(2.0)
    spawns = sum("starting new worker" in line for line in s.lines)
    assert spawns <= 10, f"{spawns} attempts in 2 s"
    # Wait for a backoff of 1.6 s or more, then deploy the fix.
    m = s.wait_line(r"(\S+) start_server\[\d+\] .*next attempt in "
                    r"(1\.6|3\.2|6\.4|12\.8|25\.6|30) s", timeout=20)
    due = log_time(m.group(1)) + float(m.group(2))
    broken.unlink()
    mark = s.mark()
    s.signal(signal.SIGHUP)
    m = s.wait_line(r"(\S+) start_server\[\d+\] gen=(\d+) .*starting new worker", start=mark)
    assert log_time(m.group(1)) < due, "the deploy waited for the backoff"
    n = int(m.group(2))
    assert "received HUP" in "\n".join(s.lines[mark:]), s.output
    assert wait_until(lambda: gen_of(http_get(port)) == n, what=f"generation {n} serving")
