"""Files the starter writes cannot be turned against it, and risky directories are named.

A root starter writes its pid, status and log files; whoever can write to
their directory must not make it write anywhere else. Every name it writes
gets a planted symlink to a victim file, which must stay untouched. (The
pid and log files at start: see the bad-input table.)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from support import APP, PY, Harness, free_port, read_status, wait_until

KEEP = "keep me\n"


def _victim(run: Harness, name: str) -> Path:
    victim = run.tmp / name
    victim.write_text(KEEP)
    return victim


def test_status_files_are_never_written_through_a_symlink(run: Harness) -> None:
    state = run.tmp / "state"
    state.mkdir()
    status = state / "status"
    victims = {name: _victim(run, f"victim-{i}") for i, name in enumerate(
        ["status", "status.json"])}
    for name, victim in victims.items():
        (state / name).symlink_to(victim)
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
                  "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running")
    wait_until(lambda: [g for g, _ in read_status(status)] == [1], what="generation 1 listed")
    assert not status.is_symlink() and not Path(f"{status}.json").is_symlink()
    # The original's temporary names, <status-file>.<starter pid>, as an attacker guesses.
    for name in ("status", "status.json"):
        victim = _victim(run, f"victim-{name}.tmp")
        victims[f"{name}.{s.pid}"] = victim
        (state / f"{name}.{s.pid}").symlink_to(victim)
    s.signal(signal.SIGHUP)
    wait_until(lambda: [g for g, _ in read_status(status)] == [2], what="generation 2 listed")
    for victim in victims.values():
        assert victim.read_text() == KEEP, f"{victim} was written through a symlink"
    assert s.stop() == 0
    # No temporary file survives: only the planted symlinks are left.
    assert sorted(os.listdir(state)) == sorted([f"status.{s.pid}", f"status.json.{s.pid}"])
    for victim in victims.values():
        assert victim.read_text() == KEEP, f"{victim} was written through a symlink"


def test_a_log_file_replaced_by_a_symlink_is_not_reopened(run: Harness) -> None:
    log = run.tmp / "log"
    victim = _victim(run, "victim")
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", f"--log-file={log}", "--interval=0.1",
                  "--", PY, APP)
    wait_until(lambda: "is now running" in log.read_text(), what="the log to say so")
    rotated = run.tmp / "log.1"
    log.rename(rotated)
    log.symlink_to(victim)
    s.signal(signal.SIGUSR1)
    wait_until(lambda: "cannot reopen" in rotated.read_text(), what="the refusal in the old log")
    assert f"cannot reopen {log}: is a symbolic link; refusing to follow it; keeping the old " \
        "one" in rotated.read_text()
    s.signal(signal.SIGHUP)  # the old log stays in use
    wait_until(lambda: "gen=2" in rotated.read_text(), what="generation 2 in the old log")
    assert victim.read_text() == KEEP
    assert s.stop() == 0


def _warnings(run: Harness, directory: Path) -> list[str]:
    """The warning lines of a starter keeping its files in ``directory``."""
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={directory}/pid",
                  f"--status-file={directory}/status", "--", PY, APP)
    s.wait_line(r"starting new worker")
    assert s.stop() == 0
    return [line for line in s.output.splitlines() if "warning:" in line]


def test_a_directory_another_user_can_write_is_named_once(run: Harness) -> None:
    theirs = run.tmp / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    lines = _warnings(run, theirs)
    assert len(lines) == 1, lines
    assert (f"warning: the directory {theirs} of --pid-file and --status-file is writable "
            "by its owner (uid 65534)") in lines[0]
    assert "/run/start_server/" in lines[0]


def test_a_group_writable_directory_is_named(run: Harness) -> None:
    shared = run.tmp / "shared"
    shared.mkdir()
    os.chown(shared, 0, 65534)
    shared.chmod(0o775)
    lines = _warnings(run, shared)
    assert len(lines) == 1 and "writable by group 65534" in lines[0], lines


def test_root_owned_and_sticky_directories_draw_no_warning(run: Harness) -> None:
    mine = run.tmp / "mine"
    mine.mkdir(mode=0o755)
    assert _warnings(run, mine) == []
    sticky = run.tmp / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp
    assert _warnings(run, sticky) == []




def test_an_envdir_another_user_can_write_is_named(run: Harness) -> None:
    env = run.envdir(APP_EXTRA="")
    os.chown(env, 65534, 65534)
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", f"--envdir={env}", "--", PY, APP)
    s.wait_line(r"starting new worker")
    assert s.stop() == 0
    lines = [line for line in s.output.splitlines() if "warning:" in line]
    assert len(lines) == 1 and f"warning: --envdir={env} is writable by its owner (uid " \
        "65534), who can put any variable" in lines[0], lines
