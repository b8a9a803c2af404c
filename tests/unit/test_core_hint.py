"""The one hint line when nothing has served after a few attempts (pure core)."""

from __future__ import annotations

from core_support import logs
from test_core_backoff import boot, hup, spawned

from start_server.core import HINT_AFTER_FAILURES, Exited, Policy, Start, Supervisor, Tick

PORT_ENV = "127.0.0.1:8080=3;/run/app.sock=4"


def fail_starts(s: Supervisor, first: int, count: int, now: float) -> tuple[str, float]:
    """Generations ``first`` .. ``first + count - 1`` each exit before they start."""
    out = []
    for n in range(first, first + count):
        if n > first or s.gens.get(n) is None:
            now = s.next_deadline() or now  # the backoff's next attempt
            acts = s.handle(Tick(), now)
            out.append(logs(acts))
        spawned(s, n, now)
        out.append(logs(s.handle(Exited(100 * n, 256, "exit code 1"), now + 0.1)))
        now += 0.1
    return "\n".join(out), now


def test_hint_once_when_nothing_ever_started() -> None:
    s = Supervisor(Policy(interval=1.0, backoff_max=30.0, wait_ready=True))
    s.port_env = PORT_ENV
    s.handle(Start(), 0.0)
    text, _ = fail_starts(s, 1, HINT_AFTER_FAILURES + 3, 0.0)
    hints = [x for x in text.splitlines() if x.startswith("hint:")]
    assert hints == [
        f"hint: nothing has served after {HINT_AFTER_FAILURES} attempts; usually the command "
        "exits at once (run it by hand to see why); or the app binds the port itself "
        "('Address already in use') instead of using the socket it inherits: "
        f"SERVER_STARTER_PORT={PORT_ENV} (fd 3 for 127.0.0.1:8080; listen_from_env() in "
        "Python); or with --wait-ready, it never sends READY=1 to NOTIFY_SOCKET"
    ]
    assert text.index("hint:") > text.index(f"failed starts in a row: {HINT_AFTER_FAILURES - 1}")


def test_no_hint_when_a_broken_deploy_fails_while_the_old_generation_serves() -> None:
    s = Supervisor(Policy(interval=1.0, backoff_max=30.0))
    s.port_env = PORT_ENV
    now = boot(s)
    hup(s, now)
    text, _ = fail_starts(s, 2, HINT_AFTER_FAILURES + 1, now)
    assert f"failed starts in a row: {HINT_AFTER_FAILURES}" in text
    assert "hint:" not in text


def test_no_hint_when_a_generation_served_before_it_crashed() -> None:
    """Generation 1 ran past --min-uptime, then the next ones die at once."""
    s = Supervisor(Policy(interval=1.0, backoff_max=30.0, min_uptime=1.0))
    now = boot(s) + 60.0
    text = logs(s.handle(Exited(100, 256, "exit code 1"), now))
    more, _ = fail_starts(s, 2, HINT_AFTER_FAILURES + 1, now)
    assert f"failed starts in a row: {HINT_AFTER_FAILURES}" in more
    assert "hint:" not in text + more
