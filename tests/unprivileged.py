"""Running test programs as another user (the suite runs as root).

``nobody`` may not be able to read the checkout or run the venv's python (a
home directory of mode 0700 holds either), so a kit is copied to a fresh
world-readable directory: the test apps and the package, and the first
interpreter that user can run. Each test that needs it says so by using
the ``kit`` fixture; without root it fails rather than pretend.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import APPS, TESTS

NOBODY = pwd.getpwnam("nobody")


@dataclass(frozen=True)
class Kit:
    dir: Path  # world-readable: the apps, and the package on PYTHONPATH
    python: str  # an interpreter nobody can run

    def env(self) -> dict[str, str]:
        return {"PYTHONPATH": str(self.dir)}

    def app(self, name: str = "app.py") -> str:
        return str(self.dir / name)


def _interpreters() -> list[str]:
    seen: list[str] = []
    for cand in (sys.executable, os.path.realpath(sys.executable),
                 getattr(sys, "_base_executable", ""), shutil.which("python3") or "",
                 "/usr/bin/python3"):
        if cand and cand not in seen:
            seen.append(cand)
    return seen


@pytest.fixture(scope="session")
def kit() -> Iterator[Kit]:
    if os.geteuid() != 0:
        pytest.fail("this test runs programs as another user: it needs root")
    top = Path(tempfile.mkdtemp(prefix="start_server-kit."))
    try:
        top.chmod(0o755)
        for app in APPS.glob("*.py"):
            shutil.copy(app, top / app.name)
        shutil.copytree(TESTS.parent / "start_server", top / "start_server",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for path in [top, *top.rglob("*")]:
            path.chmod(0o755)
        for python in _interpreters():
            try:
                r = subprocess.run([python, "-c", "import start_server"], cwd=top,
                                   env={"PYTHONPATH": str(top)}, user=NOBODY.pw_uid,
                                   group=NOBODY.pw_gid, extra_groups=[], capture_output=True,
                                   timeout=30, check=False)
            except PermissionError:
                continue
            if r.returncode == 0:
                break
        else:
            pytest.fail(f"no python that user nobody can run among {_interpreters()}")
        yield Kit(top, python)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@dataclass(frozen=True)
class ScratchUser:
    name: str
    uid: int
    gid: int  # its own primary group
    extra: str  # a supplementary group's name
    extra_gid: int
    home: str


@pytest.fixture(scope="session")
def test_user(kit: Kit) -> Iterator[ScratchUser]:
    """A user of the test's own with a primary and a supplementary group (removed after)."""
    for tool in ("useradd", "userdel", "groupadd", "groupdel"):
        assert shutil.which(tool), f"{tool} (the passwd package) is needed to make a test user"
    name, extra = f"sst{os.getpid()}", f"sstx{os.getpid()}"
    subprocess.run(["groupadd", extra], check=True, capture_output=True)
    try:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(kit.dir), "--user-group",
             "--groups", extra, "--shell", "/bin/false", name],
            check=True, capture_output=True,
        )
        try:
            pw = pwd.getpwnam(name)
            import grp

            yield ScratchUser(name, pw.pw_uid, pw.pw_gid, extra, grp.getgrnam(extra).gr_gid,
                           pw.pw_dir)
        finally:
            subprocess.run(["userdel", name], check=False, capture_output=True)
    finally:
        subprocess.run(["groupdel", extra], check=False, capture_output=True)
