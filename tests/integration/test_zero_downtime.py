"""Zero downtime, proven: 16 busy clients, a HUP every 100 ms, no failed request."""

from __future__ import annotations

import http.client
import signal
import threading
import time
from pathlib import Path

import pytest
from support import PY, Harness, free_port, wait_until

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "hello_app.py")
CLIENTS = 16
HUP_EVERY = 0.1
DURATION = 4.0


@pytest.mark.timeout(90)
def test_no_request_fails_while_restarting_every_100ms(run: Harness) -> None:
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--", PY, EXAMPLE)
    s.wait_line(r"gen=1 .*is now running")

    stop = threading.Event()
    ok = [0] * CLIENTS
    failures: list[str] = []
    generations: set[str] = set()

    def client(i: int) -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status != 200 or not body.startswith("hello from generation"):
                    failures.append(f"client {i}: HTTP {resp.status} {body!r}")
                else:
                    ok[i] += 1
                    generations.add(body.split()[3])
            except OSError as exc:
                failures.append(f"client {i}: {exc!r}")
            finally:
                conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    hups = 0
    try:
        end = time.monotonic() + DURATION
        next_hup = time.monotonic()
        while time.monotonic() < end:
            s.signal(signal.SIGHUP)
            hups += 1
            next_hup += HUP_EVERY
            # Pacing the HUPs is the point of the test, not a wait for a condition.
            stop.wait(max(0.0, next_hup - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:5]}"
    assert sum(ok) > 100, ok
    assert all(ok), f"some client never got an answer: {ok}"
    assert len(generations) >= 5, f"too few generations served: {sorted(generations)}"
    assert hups >= 30
    # Every generation but the newest drains and exits; the log says so.
    wait_until(lambda: s.output.count("old worker") >= len(generations) - 1, timeout=30,
               what="old generations to exit")
