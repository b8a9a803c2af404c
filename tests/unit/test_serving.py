"""serve_http is loaded only when used, and loads nothing of the starter's."""

from __future__ import annotations

import ast
import subprocess
import sys


def test_serve_http_is_lazy_and_lean() -> None:
    code = (
        "import sys\n"
        "import start_server\n"
        "before = sorted(m for m in sys.modules if m.startswith('start_server'))\n"
        "start_server.serve_http\n"
        "after = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('start_server', 'click', 'yaml', 'daemon'))\n"
        "print([before, after])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    before, after = ast.literal_eval(r.stdout)
    assert before == ["start_server"]
    assert after == ["start_server", "start_server.listener", "start_server.serving"]
