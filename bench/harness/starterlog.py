"""Our starter's log lines as events: each carries a UTC timestamp to the ms."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Optional

LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z start_server\[\d+\] "
    r"(?:gen=(\d+) )?(?:pid=(\d+) )?(.*)$"
)


def log_events(path: Path) -> list[tuple[float, Optional[int], str]]:
    """(unix time, pid or None, message) of each line of our starter's log."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m is None:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        ts = t.replace(tzinfo=datetime.timezone.utc).timestamp()
        out.append((ts, int(m.group(3)) if m.group(3) else None, m.group(4)))
    return out
