"""What a section of the benchmark is, and the starter setups several sections share.

A section measures (``measure``: its results, a JSON-able dict, stored under its
key), then speaks for its figures: its rows of the table (``rows``), its
paragraph(s) of the reading (``reading``), its part of the line saying how many
samples each figure took (``note``), and optionally a table of details printed
after the main one (``details``) and options of its own (``add_options``,
``defaults``). ``rows``, ``reading``, ``note`` and ``details`` get every section's
results (a section may speak of another's figures, as (e) does of (c)'s) and return
nothing when theirs are missing (the section was not run or failed).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

Results = dict[str, Any]  # section key -> what its measure() returned
Row = list[str]  # measure, ours, perl, ours/perl, target, met


def _no_note(results: Results, opt: argparse.Namespace) -> str:
    return ""


@dataclass(frozen=True)
class Section:
    key: str  # its letters for --only ("de": run when d or e is asked for)
    measure: Callable[[argparse.Namespace, Path], dict[str, Any]]
    rows: Callable[[Results], list[Row]]
    reading: Callable[[Results], list[str]]
    note: Callable[[Results, argparse.Namespace], str] = _no_note
    # (title, header, rows) of a table printed after the main one, or None
    details: Optional[Callable[[Results], Optional[tuple[str, Row, list[Row]]]]] = None
    add_options: Optional[Callable[[argparse.ArgumentParser], None]] = None
    defaults: Optional[Callable[[argparse.Namespace], None]] = None  # after parsing


# (key, implementation, options, the app sends READY=1, description)
RunConfig = tuple[str, str, list[str], bool, str]
OURS_READY: RunConfig = ("ours_ready", "ours", ["--wait-ready"], True, "ours --wait-ready")
OURS_I1: RunConfig = ("ours_i1", "ours", ["--interval", "1"], False, "ours --interval=1")
OURS_I1_NOTIFY: RunConfig = (
    "ours_i1_notify",
    "ours",
    ["--interval", "1"],
    True,
    "ours --interval=1, app sends READY=1",
)
PERL_I1: RunConfig = ("perl", "perl", [], False, "perl (default --interval 1)")
