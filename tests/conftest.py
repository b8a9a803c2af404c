from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Harness


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Harness]:
    """Start real starters and apps; on teardown stop them and prove nothing is left."""
    harness = Harness(tmp_path)
    yield harness
    left = harness.cleanup()
    assert not left, f"processes left behind by the test (killed now): {left}"
