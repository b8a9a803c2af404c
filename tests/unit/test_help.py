"""--help in sections, --version, and the generated reference and man page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from start_server import __version__, helptext, reference
from start_server.options import command

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "start_server", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )


def long_names() -> list[str]:
    """Every option of the table, --help included (click adds it)."""
    with click.Context(command, **command.context_settings) as ctx:
        params = command.get_params(ctx)
    return [helptext.long_name(p) for p in params if isinstance(p, click.Option)]


def test_every_option_is_in_exactly_one_section() -> None:
    placed = [name for _, names in helptext.SECTIONS for name in names]
    assert len(placed) == len(set(placed)), "an option is in two sections"
    missing = sorted(set(long_names()) - set(placed))
    assert not missing, f"add these to helptext.SECTIONS: {missing}"
    assert not set(placed) - set(long_names()), "SECTIONS names an option that is gone"


def test_help_shows_the_sections_in_order_then_the_examples() -> None:
    r = run("--help")
    assert r.returncode == 0, r.stderr
    titles = [title for title, _ in helptext.SECTIONS]
    found = [line[:-1] for line in r.stdout.splitlines() if line[:-1] in titles]
    assert found == titles
    assert helptext.OTHER not in r.stdout
    for name in long_names():
        assert re.search(rf"^  (-h, )?{name}\b", r.stdout, re.M), name
    examples = r.stdout.index("Examples:")
    assert examples > r.stdout.index("Information:")
    assert "start_server --restart --pid-file app.pid" in r.stdout[examples:]
    assert "man start_server" in r.stdout[examples:]
    assert r.stdout.startswith("Usage: start_server [OPTIONS] -- PROGRAM [ARGS]...\n")


def test_version_names_python_and_the_original() -> None:
    r = run("--version")
    assert r.returncode == 0, r.stderr
    python = ".".join(map(str, sys.version_info[:3]))
    assert r.stdout == (
        f"start_server {__version__} (Python {python}, compatible with Server::Starter 0.35)\n"
    )


def test_the_committed_reference_is_the_generated_one() -> None:
    text = (REPO / reference.DOC).read_text()
    assert reference.with_markdown(text) == text, "run: python -m start_server.reference"
    for name in long_names():
        assert f"| `{name}" in text or f"| `-h, {name}" in text, name


def test_the_committed_man_page_is_the_generated_one() -> None:
    man = (REPO / reference.MAN).read_text()
    assert man == reference.man_page(), "run: python -m start_server.reference"
    for name in long_names():
        assert f"\\fB{name.replace('-', chr(92) + '-')}\\fR" in man, name


def test_the_check_above_can_fail(tmp_path: Path) -> None:
    """A hand edit of the generated part, or a stale one, is seen and rewritten."""
    (tmp_path / "docs").mkdir()
    doc = tmp_path / reference.DOC
    text = (REPO / reference.DOC).read_text()
    doc.write_text(text.replace("| `--port SPEC` |", "| `--port SPEC` | (edited)", 1))
    assert reference.with_markdown(doc.read_text()) != doc.read_text()
    assert reference.main(str(tmp_path)) == 1  # rewrote both
    assert doc.read_text() == text
    assert (tmp_path / reference.MAN).read_text() == reference.man_page()
    assert reference.main(str(tmp_path)) == 0  # nothing left to do


@pytest.mark.skipif(not Path("/usr/bin/man").exists(), reason="no man(1) here")
def test_the_man_page_renders_without_complaint() -> None:
    r = subprocess.run(
        ["man", "--warnings", "-l", str(REPO / reference.MAN)],
        capture_output=True, text=True, timeout=60, check=False,
        env={"MANWIDTH": "80", "PATH": "/usr/bin:/bin", "MANPAGER": "cat"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "--wait-ready" in r.stdout.replace("\u2010", "-")


def test_bash_completion_as_documented() -> None:
    """docs/options.md's bash line, then a Tab after ``--wai``."""
    bindir = str(Path(sys.executable).parent)
    script = (
        'eval "$(_START_SERVER_COMPLETE=bash_source start_server)"\n'
        "COMP_WORDS=(start_server --wai); COMP_CWORD=1\n"
        '_start_server_completion start_server; echo "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": f"{bindir}:/usr/bin:/bin"},
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "--wait-ready\n", "")
    assert '_START_SERVER_COMPLETE=bash_source start_server' in (REPO / reference.DOC).read_text()
