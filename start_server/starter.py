"""The starter's lean process: ``python -S <this file> --hand-over=FD ARGS``,
exec'd by reexec.py.

Run as a script, so Python has put this file's directory first on the import
path, where the package's own modules would pass for top-level ones: it is
taken out before anything is imported from there, and the package's parent
goes after the standard library, where the site machinery would have put it
(the rest of the full process's path follows in ``reexec.take_options``).
Only ``sys`` and ``os`` (built in and frozen: never looked up on the path)
are imported before that.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.append(os.path.dirname(_HERE))

from start_server.cli import main_lean  # noqa: E402  (the path above comes first)

main_lean()
