"""Reading an envdir (--envdir): one variable per file, as daemontools' envdir does."""

from __future__ import annotations

import os

from .files import read_regular
from .log import log

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional


ENVDIR_LIMIT = 1 << 18  # 256 KiB: the longest first line an envdir file may hold


def read_envdir(path: Optional[str]) -> dict[str, Optional[str]]:
    """daemontools envdir: each file's first line is a value; an empty file unsets.

    Returns name -> value, or name -> None for a variable to remove. Only
    regular files count (symlinks to them too); a FIFO, a device or a file
    whose first line is over ``ENVDIR_LIMIT`` is skipped with a log line,
    never waited on nor read to the end.
    """
    out: dict[str, Optional[str]] = {}
    if path is None:
        return out
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        log(f"cannot read envdir {path}: {exc.strerror}")
        return out
    for name in names:
        if name.startswith(".") or "=" in name:
            continue
        full = os.path.join(path, name)
        if os.path.isdir(full):
            continue
        try:
            data = read_regular(full, ENVDIR_LIMIT + 1)
        except OSError as exc:
            log(f"ignoring envdir entry {full}: {exc.strerror}")
            continue
        if not data:
            out[name] = None
            continue
        first = data.split(b"\n", 1)[0]
        if len(first) > ENVDIR_LIMIT:
            log(f"ignoring envdir entry {full}: first line over {ENVDIR_LIMIT} bytes")
            continue
        # daemontools: trailing blanks go, NULs become newlines.
        out[name] = first.rstrip(b" \t").replace(b"\0", b"\n").decode(errors="replace")
    return out
