"""The basic life of a starter: start, serve, HUP swap, TERM, nothing left."""

from __future__ import annotations

import signal

from support import APP, PY, Harness, free_port, gen_of, http_get, read_status, wait_until


def test_start_hup_term(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=0.2", "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    assert gen_of(http_get(port)) == 1
    assert [g for g, _ in read_status(status)] == [1]
    assert pid_file.read_text() == f"{s.pid}\n"

    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"old worker \d+ died", start=mark)
    wait_until(lambda: [g for g, _ in read_status(status)] == [2], what="status 2 only")
    assert gen_of(http_get(port)) == 2

    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "exiting" in s.output
    assert not status.exists()
    assert not pid_file.exists()
