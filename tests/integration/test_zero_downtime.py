"""Zero downtime, proven: 16 busy clients, a HUP every 100 ms, no failed request."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from support import PY, ClientLoad, Harness, free_port, wait_until

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "hello_app.py")
CLIENTS = 16
HUP_EVERY = 0.1
DURATION = 4.0


@pytest.mark.timeout(90)
def test_no_request_fails_while_restarting_every_100ms(run: Harness) -> None:
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--", PY, EXAMPLE)
    s.wait_line(r"gen=1 .*is now running")

    hups = 0
    with ClientLoad(port, CLIENTS, timeout=10) as load:
        end = time.monotonic() + DURATION
        next_hup = time.monotonic()
        while time.monotonic() < end:
            s.signal(signal.SIGHUP)
            hups += 1
            next_hup += HUP_EVERY
            # Pacing the HUPs is the point of the test, not a wait for a condition.
            load.stop.wait(max(0.0, next_hup - time.monotonic()))
    load.check()
    generations = load.generations()
    assert len(generations) >= 5, f"too few generations served: {sorted(generations)}"
    assert hups >= 30
    # Every generation but the newest drains and exits; the log says so.
    wait_until(lambda: s.output.count("old worker") >= len(generations) - 1, timeout=30,
               what="old generations to exit")
