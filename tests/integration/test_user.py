"""--user and --group: the starter stays root, the workers are the user's.

The suite runs as root. The workers run the kit's copy of the test app (a
directory and an interpreter the user can reach); the starter runs as usual.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from support import Harness, Proc, free_port, gen_of, http_get, read_status, wait_until
from unprivileged import NOBODY, Kit, ScratchUser, kit, test_user

__all__ = ["kit", "test_user"]  # the fixtures, used by name


def _ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid (real, effective, saved, fs) and Groups of a process, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(x) for x in rest.split()]
    return out


def _start(run: Harness, kit: Kit, *options: str, app: tuple[str, ...] = ("--notify",)
           ) -> tuple[Proc, int, Path, Path]:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    env = run.envdir(PYTHONPATH=str(kit.dir))  # for the workers only
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", f"--envdir={env}", f"--dir={kit.dir}",
                  *options, "--", kit.python, kit.app(), *app)
    return s, port, pid_file, status


def _worker(s: Proc, number: int = 1) -> int:
    return int(s.wait_line(rf"gen={number} .*starting new worker (\d+)").group(1))


def test_workers_run_as_the_user_with_its_groups_and_home(
    run: Harness, kit: Kit, test_user: ScratchUser
) -> None:
    s, port, pid_file, status = _start(run, kit, f"--user={test_user.name}", "--wait-ready")
    worker = _worker(s)
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=30)  # readiness works as the user
    ids = _ids(worker)
    assert ids["Uid"] == [test_user.uid] * 4, ids
    assert ids["Gid"] == [test_user.gid] * 4, ids
    assert sorted(ids["Groups"]) == sorted([test_user.gid, test_user.extra_gid]), ids
    assert _ids(s.pid)["Uid"] == [0] * 4  # the starter stays root
    for name, value in (("HOME", test_user.home), ("USER", test_user.name),
                        ("LOGNAME", test_user.name)):
        assert http_get(port, f"/env/{name}").strip() == value
    # The notify socket: the user may reach it, nobody else.
    address = http_get(port, "/env/NOTIFY_SOCKET").strip()
    assert os.stat(os.path.dirname(address)).st_mode & 0o777 == 0o711
    st = os.stat(address)
    assert (st.st_uid, st.st_mode & 0o777) == (test_user.uid, 0o600)
    # A worker cannot signal the starter.
    assert http_get(port, f"/kill0/{s.pid}").strip() == "PermissionError"
    # --restart (a HUP) and --stop still work.
    r = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}")
    assert r.returncode == 0, r.stderr
    assert gen_of(http_get(port)) == 2
    assert _ids(_worker(s, 2))["Uid"] == [test_user.uid] * 4
    r = run.run("--stop", f"--pid-file={pid_file}")
    assert r.returncode == 0, r.stderr
    assert s.wait() == 0
    assert not os.path.exists(os.path.dirname(address))


def test_group_sets_the_primary_group(run: Harness, kit: Kit, test_user: ScratchUser) -> None:
    s, _port, _pid_file, _status = _start(run, kit, f"--user={test_user.uid}",
                                          f"--group={test_user.extra}")
    ids = _ids(_worker(s))
    assert ids["Uid"] == [test_user.uid] * 4, ids
    assert ids["Gid"] == [test_user.extra_gid] * 4, ids
    assert test_user.extra_gid in ids["Groups"], ids


def test_group_alone_keeps_the_user(run: Harness, kit: Kit) -> None:
    s, port, _pid_file, _status = _start(run, kit, f"--group={NOBODY.pw_gid}")
    ids = _ids(_worker(s))
    assert ids["Uid"] == [0] * 4 and ids["Gid"] == [NOBODY.pw_gid] * 4, ids
    assert ids["Groups"] == [NOBODY.pw_gid], ids
    assert http_get(port, "/env/HOME").strip() == os.environ.get("HOME", "<unset>")


def test_hup_restarts_workers_of_nobody(run: Harness, kit: Kit) -> None:
    s, port, _pid_file, status = _start(run, kit, "--user=nobody", "--wait-ready")
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=30)
    assert _ids(_worker(s))["Uid"] == [NOBODY.pw_uid] * 4
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*is now running \(ready\)", timeout=30)
    wait_until(lambda: [g for g, _ in read_status(status)] == [2], what="generation 1 gone")
    assert gen_of(http_get(port)) == 2
    assert s.stop() == 0


def test_a_process_of_the_workers_user_cannot_fake_readiness(run: Harness, kit: Kit) -> None:
    s, port, _pid_file, status = _start(run, kit, "--user=nobody", "--wait-ready",
                                        "--ready-timeout=60", app=())
    _worker(s)
    address = wait_until(lambda: http_get(port, "/env/NOTIFY_SOCKET").strip(),
                         what="the app to answer")
    r = subprocess.run(
        [kit.python, kit.app("forge_notify.py"), address, "fork", "100"],
        capture_output=True, text=True, timeout=120, check=True,
        user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[],
    )
    assert r.stdout.strip() == "sent=101 refused=0", r.stdout

    def ignored() -> int:
        return sum(1 if m == "a" else int(m) for m in re.findall(
            r"ignored (a|\d+) notifications? to generation 1 ", s.output))

    wait_until(lambda: ignored() == 101, timeout=30, what="all 101 to be counted as ignored")
    assert "is now running" not in s.output
    assert read_status(status) == []
    assert s.stop() == 0


def test_a_user_that_cannot_run_the_command_is_one_line(run: Harness, kit: Kit) -> None:
    """The venv's python under root's home: nobody may not run it. Exit 1, one reason."""
    private = run.tmp / "private"
    private.mkdir(mode=0o700)
    script = private / "serve.sh"
    script.write_text("#!/bin/sh\nexec sleep 100\n")
    script.chmod(0o755)
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--user=nobody", "--", str(script))
    assert s.wait(30) == 1
    assert re.search(rf"cannot execute '{script}': Permission denied", s.output), s.output


def test_user_and_group_from_the_config_file(run: Harness, kit: Kit) -> None:
    port = free_port()
    env = run.envdir(PYTHONPATH=str(kit.dir))
    config = run.tmp / "start_server.yaml"
    config.write_text(
        f"port: ['127.0.0.1:{port}']\nuser: nobody\ngroup: {NOBODY.pw_gid}\n"
        f"envdir: {env}\ndir: {kit.dir}\ncommand: [{kit.python}, {kit.app()}]\n"
    )
    s = run.start(f"--config={config}")
    ids = _ids(_worker(s))
    assert ids["Uid"] == [NOBODY.pw_uid] * 4 and ids["Gid"] == [NOBODY.pw_gid] * 4, ids
    assert http_get(port, "/env/USER").strip() == "nobody"
