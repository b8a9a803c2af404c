"""python -m tests.chaos [--duration SECONDS] [--seed N]: a chaos soak of the real
program; prints the figures, or on a failure the seed and the event log; exit 1."""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import sys
import tempfile
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of chaos (60)")
    ap.add_argument("--seed", type=int, default=None, help="the schedule (random if not given)")
    ap.add_argument("--verbose", action="store_true", help="print each event as it happens")
    args = ap.parse_args()
    seed = random.randrange(1 << 32) if args.seed is None else args.seed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests/support.py
    from support import Harness

    from .engine import Chaos, ChaosFailure

    tmp = Path(tempfile.mkdtemp(prefix="start_server-chaos-"))
    harness = Harness(tmp)
    chaos = Chaos(harness, seed, args.duration, echo=print if args.verbose else None)
    failed = True
    try:
        chaos.run()
        failed = False
        print(chaos.report())
    except ChaosFailure as exc:
        print(exc)
    except Exception as exc:  # a broken wait in the run itself: the replay material too
        chaos.verdict.violations.append(repr(exc))
        print(chaos.report())
    finally:
        output = io.StringIO()
        with contextlib.redirect_stdout(output):  # the processes' output: for a failure
            left = harness.cleanup()
        if failed or left:
            print(output.getvalue())
        if left:
            print(f"processes left behind (killed now): {left}")
            failed = True
    if failed:
        print(f"files kept in {tmp}")
        return 1
    shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
