from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from support import Harness

# Hypothesis: "default" keeps the suite quick; HYPOTHESIS_PROFILE=soak runs
# 100 000 examples per property or state machine (see docs/development.md).
settings.register_profile("default", deadline=None)
settings.register_profile("soak", max_examples=100_000, deadline=None, print_blob=True)
# "quick": the other Pythons of .ci/pythons check that the code runs there, not
# the search the main run already makes.
settings.register_profile("quick", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Started as a background job of a script (no job control), this process
# inherits INT and QUIT ignored, and so would every program a test starts: an
# ignored signal stays ignored across exec. Handled here instead (a handler is
# reset to the default by exec), the programs under test see what they see
# when a person starts them, and Ctrl-C still stops the suite.
signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Harness]:
    """Start real starters and apps; on teardown stop them and prove nothing is left."""
    harness = Harness(tmp_path)
    yield harness
    left = harness.cleanup()
    assert not left, f"processes left behind by the test (killed now): {left}"
