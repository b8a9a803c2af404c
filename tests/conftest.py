from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from support import Harness

# Hypothesis: "default" keeps the suite quick; HYPOTHESIS_PROFILE=soak runs
# 100 000 examples per property or state machine (see docs/development.md).
settings.register_profile("default", deadline=None)
settings.register_profile("soak", max_examples=100_000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Harness]:
    """Start real starters and apps; on teardown stop them and prove nothing is left."""
    harness = Harness(tmp_path)
    yield harness
    left = harness.cleanup()
    assert not left, f"processes left behind by the test (killed now): {left}"
