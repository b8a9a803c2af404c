"""An upgrade between two really installed versions: a wheel of this checkout
with an older version number installed into a venv and started, then this
checkout's wheel installed over it with pip, then ``start_server --upgrade``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import APP, Harness, free_port, http_get

from start_server import __version__

ROOT = Path(__file__).resolve().parents[2]
OLD = "0.0.1"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def _wheel(tmp: Path, name: str, version: str) -> Path:
    """A wheel of this checkout, numbered ``version``."""
    src = tmp / name
    src.mkdir()
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / "man", src / "man")
    shutil.copytree(ROOT / "start_server", src / "start_server",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path, old in ((src / "pyproject.toml", f'version = "{__version__}"'),
                      (src / "start_server" / "__init__.py", f'__version__ = "{__version__}"')):
        text = path.read_text()
        assert old in text, path
        path.write_text(text.replace(old, old.replace(__version__, version)))
    r = _pip("wheel", "--no-deps", "-q", "-w", str(tmp / "wheels"), str(src))
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here (no build backend?): {r.stderr.strip()[-300:]}")
    (wheel,) = (tmp / "wheels").glob(f"start_server-{version}-*.whl")
    return wheel


@pytest.mark.timeout(600)
def test_upgrade_from_an_installed_version_to_the_one_installed_over_it(run: Harness) -> None:
    old_wheel = _wheel(run.tmp, "old", OLD)
    new_wheel = _wheel(run.tmp, "new", __version__)
    venv = run.tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = str(venv / "bin" / "python")
    r = _pip("--python", py, "install", "-q", str(old_wheel))
    if r.returncode != 0:
        pytest.skip(f"cannot install into a venv here: {r.stderr.strip()[-300:]}")
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    client = [str(venv / "bin" / "start_server"), f"--pid-file={pid_file}",
              f"--status-file={status}", "--timeout=60"]
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", "--interval=0.2", "--", sys.executable, APP,
                  argv0=[str(venv / "bin" / "start_server")], cwd="/")
    s.wait_line(r"gen=1 .*is now running")
    body = http_get(port)
    r = _pip("--python", py, "install", "-q", "--no-deps", str(new_wheel))
    assert r.returncode == 0, r.stderr
    up = subprocess.run([*client, "--upgrade"], capture_output=True, text=True, timeout=90,
                        env=run.env(), check=False)
    assert up.returncode == 0, up.stderr
    assert f"upgraded start_server {OLD} -> {__version__} (pid {s.pid})" in up.stderr
    assert http_get(port) == body
    st = subprocess.run([*client, "--status", "--json"], capture_output=True, text=True,
                        timeout=60, env=run.env(), check=False)
    assert f'"version": "{__version__}"' in st.stdout.replace('":"', '": "'), st.stdout
    restart = subprocess.run([*client, "--restart"], capture_output=True, text=True,
                             timeout=90, env=run.env(), check=False)
    assert restart.returncode == 0 and "generation 2" in restart.stderr, restart.stderr
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output
