"""start_server.serve_http through real restarts: nothing lost, callbacks always run."""

from __future__ import annotations

import signal
import socket
import time

import pytest
from support import APPS, PY, ClientLoad, Harness, free_port, wait_until

SERVE_APP = str(APPS / "serve_app.py")


def _files(run: Harness) -> tuple[str, str]:
    return f"--pid-file={run.tmp / 'pid'}", f"--status-file={run.tmp / 'status'}"


@pytest.mark.timeout(120)
def test_restarts_under_load_with_requests_in_flight_lose_nothing(run: Harness) -> None:
    port = free_port()
    marker = run.tmp / "marker"
    s = run.start(
        f"--port=127.0.0.1:{port}", *_files(run), "--wait-ready",
        "--", PY, SERVE_APP, "--slow=0.05", f"--marker={marker}",
    )
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=20)
    with ClientLoad(port, 8, timeout=20) as load:
        wait_until(lambda: sum(load.ok) >= 20, timeout=30, what="requests served")
        for n in range(2, 7):
            r = run.run("--restart", *_files(run), "--timeout=30")
            assert r.returncode == 0, r.stderr
            load.wait_answered_by(n, 30)
    load.check()
    assert {1, 2, 3, 4, 5, 6} <= load.generations()
    # Each retired generation ran both callbacks, in order.
    lines = [x for x in marker.read_text().splitlines() if x != "request"]
    assert lines == ["pool closed", "flushed"] * 5
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


def test_on_shutdown_runs_when_the_client_left_mid_request(run: Harness) -> None:
    port = free_port()
    marker = run.tmp / "marker"
    s = run.start(
        f"--port=127.0.0.1:{port}", "--wait-ready",
        "--", PY, SERVE_APP, "--slow=1", f"--marker={marker}",
    )
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=20)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        wait_until(lambda: marker.exists() and "request" in marker.read_text(),
                   what="the request to be in flight")
        # The client leaves (a reset, not a polite close) while the handler works.
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    s.signal(signal.SIGTERM)
    assert s.wait(timeout=20) == 0
    assert marker.read_text().splitlines() == ["request", "pool closed", "flushed"]
    assert "Traceback" not in s.output
    s.wait_line(r"gen=1 .*died, status:0")


def test_the_drain_is_bounded(run: Harness) -> None:
    port = free_port()
    marker = run.tmp / "marker"
    s = run.start(
        f"--port=127.0.0.1:{port}",
        "--", PY, SERVE_APP, "--slow=60", "--drain-timeout=0.5", f"--marker={marker}",
    )
    s.wait_line(r"gen=1 .*is now running", timeout=20)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        wait_until(lambda: marker.exists() and "request" in marker.read_text(),
                   what="the request to be in flight")
        begin = time.monotonic()
        s.signal(signal.SIGTERM)
        assert s.wait(timeout=30) == 0
        took = time.monotonic() - begin
    assert took < 10, f"the drain took {took:.1f} s despite --drain-timeout=0.5"
    assert marker.read_text().splitlines() == ["request", "pool closed", "flushed"]
    s.wait_line(r"serve_http: 1 request\(s\) still running 0.5 s after the stop signal")
    s.wait_line(r"gen=1 .*died, status:256 \(exit code 1\)")
