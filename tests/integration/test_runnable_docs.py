"""The docs' commands marked runnable run as written, so that none silently rots.

A shell block right after a line ``<!-- runnable -->`` in the README, docs/ or
contrib/systemd/README.md is run, the blocks of one file in order in one
bash (``set -e``), in a temporary directory laid out as a checkout after the
README's first command (``.venv`` is the test venv, ``examples`` the
repository's), with port 8080 replaced by a free loopback port.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import Harness, free_port

from start_server.helptext import EXAMPLES

REPO = Path(__file__).resolve().parents[2]
MARK = "<!-- runnable -->"
BLOCK = re.compile(r"^<!-- runnable -->\n```(?:sh|bash)\n(.*?)^```$", re.M | re.S)
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        REPO / "contrib" / "systemd" / "README.md"]
WITH_BLOCKS = [p for p in DOCS if MARK in p.read_text().splitlines()]


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_marker_marks_a_shell_block(doc: Path) -> None:
    assert doc.read_text().splitlines().count(MARK) == len(blocks(doc)), (
        f"{MARK} must be followed by a ```sh block on the next line"
    )


def test_the_readme_tour_is_runnable() -> None:
    assert len(blocks(REPO / "README.md")) >= 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("doc", WITH_BLOCKS, ids=lambda p: str(p.relative_to(REPO)))
def test_runnable_blocks_run(doc: Path, run: Harness) -> None:
    port = str(free_port())
    (run.tmp / ".venv").symlink_to(sys.prefix)
    (run.tmp / "examples").symlink_to(REPO / "examples")
    script = "set -e\n" + "\n".join(b.replace("8080", port) for b in blocks(doc))
    r = subprocess.run(
        ["bash", "-c", script], cwd=run.tmp, env=run.env({"PATH": os.defpath}),
        capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL, check=False,
    )
    shown = f"--- script\n{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert r.returncode == 0, shown
    assert "Traceback" not in r.stdout + r.stderr, shown


@pytest.mark.timeout(120)
def test_the_help_examples_in_the_background_run(run: Harness) -> None:
    """--help's examples 2 (start in the background) and 3 (--restart), then a --stop."""
    start, restart = ("\n".join(lines) for _, lines in EXAMPLES[1:3])
    assert "--daemonize" in start and "--restart" in restart
    port = str(free_port())
    (run.tmp / ".venv").symlink_to(sys.prefix)
    (run.tmp / "examples").symlink_to(REPO / "examples")
    script = "\n".join([
        "set -e", ". .venv/bin/activate", start.replace("8080", port),
        f"curl -s 127.0.0.1:{port}", restart, "start_server --stop --pid-file app.pid",
    ])
    r = subprocess.run(
        ["bash", "-c", script], cwd=run.tmp, env=run.env({"PATH": os.defpath}),
        capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL, check=False,
    )
    assert r.returncode == 0, f"{script}\n{r.stdout}\n{r.stderr}"
    assert "start_server: restarted: generation 2" in r.stderr


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    """Every relative link names a file that exists, and a heading there if it has #."""
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.is_file():
            headings = re.findall(r"^#+ (.*)$", dest.read_text(), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert not broken, f"broken links in {doc.name}: {broken}"
