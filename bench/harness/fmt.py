"""How the table writes figures: seconds, ms, MB, ratios, yes/NO, met/missed."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Optional


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def fs(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f} s"


def fms(us: Optional[float]) -> str:
    return "n/a" if us is None else f"{us / 1000:.1f} ms"


def fmb(kb: Optional[float]) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "—" if a == 0 else "inf"
    return f"{a / b:.2f}"


def yesno(ok: Optional[bool]) -> str:
    return "" if ok is None else ("yes" if ok else "**NO**")


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def info_row(measure: str, ours: str, perl: str = "", ratio_: str = "") -> list[str]:
    """A row with no target: "info" in the target column, nothing in "met"."""
    return [measure, ours, perl, ratio_, "info", ""]
