"""Pid file, status files and parsers (start_server.files); the envdir reader. Real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from start_server import files
from start_server.envdir import read_envdir
from start_server.files import (
    FileError,
    PidFile,
    StatusFile,
    format_status,
    json_path,
    parse_pid,
    parse_status,
    read_json,
    read_pid,
    write_atomic,
)

# ---- pid file ------------------------------------------------------------------------


def test_pid_file_acquire_write_release(tmp_path: Path) -> None:
    path = tmp_path / "start_server.pid"
    pf = PidFile(str(path))
    pf.acquire()
    try:
        assert path.exists()
        pf.write(1234)
        assert path.read_text() == "1234\n"
        pf.write(56)  # a rewrite truncates
        assert path.read_text() == "56\n"
        assert read_pid(str(path)) == 56
    finally:
        pf.release()
    assert not path.exists()
    assert pf.fd is None
    pf.release()  # idempotent


def test_pid_file_reuses_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    path.write_text("99999999\nleftover junk\n")
    pf = PidFile(str(path))
    pf.acquire()
    try:
        pf.write(42)
        assert path.read_text() == "42\n"
    finally:
        pf.release()
    assert not path.exists()


def test_second_pid_file_fails_naming_option_and_holder(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    first = PidFile(str(path))
    first.acquire()
    try:
        first.write(4321)
        second = PidFile(str(path))
        with pytest.raises(FileError) as info:
            second.acquire()
        message = str(info.value)
        assert f"--pid-file={path}" in message
        assert "pid 4321" in message
        assert "locked" in message
        assert second.fd is None
        # Lock before truncate: the first holder's pid survived the attempt.
        assert path.read_text() == "4321\n"
        second.release()  # nothing acquired: a no-op, the file stays
        second.abandon()
        assert path.read_text() == "4321\n"
    finally:
        first.release()
    assert not path.exists()


def test_lock_is_free_again_after_release(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    first = PidFile(str(path))
    first.acquire()
    first.write(1)
    first.release()
    second = PidFile(str(path))
    second.acquire()
    try:
        second.write(2)
        assert read_pid(str(path)) == 2
    finally:
        second.release()


def test_pid_file_in_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "p.pid"
    with pytest.raises(FileError, match=rf"--pid-file={path}: cannot open"):
        PidFile(str(path)).acquire()


def test_abandon_removes_a_file_it_created(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    pf = PidFile(str(path))
    pf.acquire()
    pf.write(7)
    pf.abandon()
    assert not path.exists()
    assert pf.fd is None


def test_abandon_leaves_a_file_it_did_not_create(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    path.write_text("")
    pf = PidFile(str(path))
    pf.acquire()
    pf.abandon()
    assert path.exists()


def test_release_leaves_a_file_that_replaced_ours(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    pf = PidFile(str(path))
    pf.acquire()
    pf.write(1)
    other = tmp_path / "other"
    other.write_text("2\n")
    os.rename(other, path)  # someone else's pid file now sits at the path
    pf.release()
    assert path.read_text() == "2\n"


def test_release_when_the_file_is_already_gone(tmp_path: Path) -> None:
    path = tmp_path / "p.pid"
    pf = PidFile(str(path))
    pf.acquire()
    path.unlink()
    pf.release()
    assert not path.exists()
    assert pf.fd is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123\n", 123),
        ("123", 123),
        (" 123 \nmore\n", 123),
        ("", None),
        ("\n", None),
        ("0\n", None),
        ("-5\n", None),
        ("abc\n", None),
        ("12 34\n", None),
    ],
)
def test_parse_pid(text: str, expected: object) -> None:
    assert parse_pid(text) == expected


def test_read_pid_errors_name_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pid"
    with pytest.raises(FileError, match=rf"--pid-file={missing}: cannot read"):
        read_pid(str(missing))
    empty = tmp_path / "empty.pid"
    empty.write_text("")
    with pytest.raises(FileError, match=rf"--pid-file={empty}: no pid"):
        read_pid(str(empty))


# ---- status file format --------------------------------------------------------------


def test_format_status_sorts_numerically() -> None:
    text = format_status([(10, 1000), (9, 900), (2, 20), (1, 10)])
    assert text == "1:10\n2:20\n9:900\n10:1000\n"


def test_format_status_empty() -> None:
    assert format_status([]) == ""


def test_parse_status_round_trip_and_tolerance() -> None:
    entries = [(1, 10), (9, 900), (10, 1000)]
    assert parse_status(format_status(entries)) == entries
    assert parse_status("") == []
    assert parse_status("1:10\nnot a line\n\n 2:20 \n3:x\n:4\n5:\n") == [(1, 10), (2, 20)]
    assert parse_status("1:10\r\n2:20") == [(1, 10), (2, 20)]


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "status"
    write_atomic(str(path), "1:10\n")
    assert path.read_text() == "1:10\n"
    write_atomic(str(path), "2:20\n")
    assert path.read_text() == "2:20\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status"]


def test_write_atomic_keeps_readers_on_the_old_inode(tmp_path: Path) -> None:
    path = tmp_path / "status"
    write_atomic(str(path), "1:10\n")
    with open(path) as reader:
        write_atomic(str(path), "2:20\n")
        assert reader.read() == "1:10\n"  # renamed over, never rewritten in place
    assert path.read_text() == "2:20\n"


def test_status_file_write_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "status"
    sf = StatusFile(str(path))
    assert sf.json_path == json_path(str(path)) == str(path) + ".json"
    sf.write([(10, 1000), (9, 900)], {"last_generation": 10})
    assert path.read_text() == "9:900\n10:1000\n"
    assert read_json(sf.json_path) == {"last_generation": 10}
    assert json.loads(Path(sf.json_path).read_text()) == {"last_generation": 10}
    sf.write([], {"last_generation": 10, "generations": []})
    assert path.read_text() == ""
    sf.remove()
    assert list(tmp_path.iterdir()) == []
    sf.remove()  # idempotent


def test_status_file_remove_without_write_leaves_files(tmp_path: Path) -> None:
    path = tmp_path / "status"
    path.write_text("1:10\n")
    StatusFile(str(path)).remove()
    assert path.read_text() == "1:10\n"


def test_read_json_tolerates_missing_and_bad_files(tmp_path: Path) -> None:
    assert read_json(str(tmp_path / "missing.json")) is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert read_json(str(bad)) is None
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert read_json(str(listed)) is None


# ---- the envdir (start_server.effects.read_envdir) ----------------------------------


def test_read_envdir_first_line_and_unset(tmp_path: Path) -> None:
    (tmp_path / "KILL_OLD_DELAY").write_text("3\nignored second line\n")
    (tmp_path / "NO_NEWLINE").write_text("value")
    (tmp_path / "EMPTY").write_text("")  # daemontools: an empty file unsets the variable
    (tmp_path / "BLANK_LINE").write_text("\nsecond\n")  # an empty first line is a value
    (tmp_path / "TRAILING").write_text("spaced \t \n")
    (tmp_path / "NUL").write_bytes(b"a\0b\n")
    (tmp_path / ".hidden").write_text("secret\n")
    (tmp_path / "A=B").write_text("x\n")
    (tmp_path / "subdir").mkdir()
    assert read_envdir(str(tmp_path)) == {
        "BLANK_LINE": "",
        "EMPTY": None,
        "KILL_OLD_DELAY": "3",
        "NO_NEWLINE": "value",
        "NUL": "a\nb",
        "TRAILING": "spaced",
    }


def test_read_envdir_reflects_changes_between_reads(tmp_path: Path) -> None:
    var = tmp_path / "ENABLE_AUTO_RESTART"
    var.write_text("1\n")
    assert read_envdir(str(tmp_path)) == {"ENABLE_AUTO_RESTART": "1"}
    var.write_text("0\n")
    assert read_envdir(str(tmp_path)) == {"ENABLE_AUTO_RESTART": "0"}
    var.unlink()
    assert read_envdir(str(tmp_path)) == {}


def test_read_envdir_none_or_missing_is_empty(tmp_path: Path) -> None:
    assert read_envdir(None) == {}
    assert read_envdir(str(tmp_path / "missing")) == {}  # logged, not fatal


def test_create_new_refuses_a_symlink_and_leaves_its_target_alone(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    for target in (victim, tmp_path / "absent"):
        link = tmp_path / f"link-to-{target.name}"
        link.symlink_to(target)
        with pytest.raises(FileExistsError):
            files.create_new(str(link))
    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "absent").exists()


def test_write_atomic_is_0644_whatever_the_umask_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "status"
    old = os.umask(0o077)
    try:
        files.write_atomic(str(path), "1:2\n")
    finally:
        os.umask(old)
    assert path.read_text() == "1:2\n"
    assert path.stat().st_mode & 0o777 == 0o644
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        files.write_atomic(str(tmp_path / "dir"), "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "status"]
