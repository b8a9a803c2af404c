"""Hints where newcomers get stuck, from the real program."""

from __future__ import annotations

import re
import signal

from support import PY, Harness, free_port


def test_an_app_that_binds_the_port_itself_gets_one_hint(run: Harness) -> None:
    """The classic first mistake: the app binds the port start_server holds."""
    port = free_port()
    s = run.start(
        f"--port=127.0.0.1:{port}", "--interval=0.5", "--backoff-max=1",
        "--", PY, "-m", "http.server", "--bind", "127.0.0.1", str(port),
    )
    m = s.wait_line(r"hint: nothing has served after 3 attempts; .*", timeout=30)
    assert f"SERVER_STARTER_PORT=127.0.0.1:{port}=3 (fd 3 for 127.0.0.1:{port};" in m.group(0)
    assert "Address already in use" in s.output
    # Observation window: two more failed attempts, and still one hint.
    s.wait_line(r"gen=5 .*(failed to start|died unexpectedly)", timeout=30)
    assert len(re.findall(r"hint:", s.output)) == 1
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
