"""Crash backoff of the real starter: a start resets the count, a serving crash is no loop."""

from __future__ import annotations

import os
import signal
import time

from support import APP, PY, Harness, free_port, gen_of, http_get


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
