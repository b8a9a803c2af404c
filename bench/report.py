"""The report: the table, each section's details and reading, as text or markdown."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from harness.common import PERL_STARTER
from harness.processes import ERRORS, LEFTOVERS
from harness.section import Results, Row, Section

HEADER = ["measure", "ours", "perl", "ours/perl", "target", "met"]


def build_rows(results: Results, sections: Sequence[Section]) -> list[Row]:
    return [row for s in sections for row in s.rows(results)]


def samples_note(results: Results, opt: argparse.Namespace, sections: Sequence[Section]) -> str:
    return "; ".join(part for s in sections for part in [s.note(results, opt)] if part)


def text_table(rows: list[Row]) -> str:
    all_rows = [HEADER, *rows]
    widths = [max(len(r[i].replace("`", "")) for r in all_rows) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(all_rows):
        cells = [c.replace("`", "").replace("**", "").ljust(w) for c, w in zip(r, widths)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows: list[Row], head: Row = HEADER) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _plain_table(head: Row, rows: list[Row]) -> str:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]
    )


def details(results: Results, sections: Sequence[Section], markdown: bool) -> list[tuple[str, str]]:
    """(title, table) of each section's details, in the order of the sections."""
    out = []
    for s in sections:
        found = s.details(results) if s.details else None
        if found:
            title, head, rows = found
            out.append((title, md_table(rows, head) if markdown else _plain_table(head, rows)))
    return out


def print_text(
    results: Results,
    sections: Sequence[Section],
    *,
    info: dict[str, str],
    rows: list[Row],
    note: str,
    elapsed: float,
) -> None:
    print()
    print(
        f"start_server benchmark, {info['date']}: {info['nproc']} x {info['cpu']}, "
        f"Linux {info['kernel']}, Python {info['python']}, Perl {info['perl']}, "
        f"Server::Starter {info['server_starter']}, ours {info['ours']}, {info['wrk']}"
    )
    print(f"({note}; run took {elapsed:.0f} s)")
    print()
    print(text_table(rows))
    for title, table in details(results, sections, markdown=False):
        print()
        print(title)
        print(table)
    if LEFTOVERS:
        print()
        print("LEFTOVER PROCESSES (killed by the benchmark):")
        for line in LEFTOVERS:
            print("  " + line)
    if ERRORS:
        print()
        print("ERRORS:")
        for line in ERRORS:
            print("  " + line)


def markdown_report(
    results: Results,
    sections: Sequence[Section],
    opt: argparse.Namespace,
    *,
    info: dict[str, str],
    rows: list[Row],
    note: str,
    elapsed: float,
) -> str:
    """The whole results file: machine, command, table, details, reading."""
    parts = [
        "# Benchmark results: our start_server vs Perl's Server::Starter",
        "",
        "Written by `bench/run.py` (do not edit by hand: run the command below again). How "
        "each figure is measured: [README.md](README.md).",
        "",
        f"- date: {info['date']}",
        f"- command: `{info['command']}`",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"{info['os']}, Linux {info['kernel']}",
        f"- Python {info['python']}; Perl {info['perl']}, Server::Starter "
        f"{info['server_starter']} (`{PERL_STARTER}`); ours {info['ours']}; {info['wrk']}",
        f"- load average (1, 5, 15 min) at the start: {info['load_start']}, at the end: "
        f"{info['load_end']}",
        f"- {note}; the whole run took {elapsed:.0f} s",
    ]
    if opt.note:
        parts += ["", f"> **Note:** {opt.note}"]
    parts += ["", "## Figures", "", md_table(rows)]
    for title, table in details(results, sections, markdown=True):
        parts += ["", title, "", table]
    if LEFTOVERS:
        parts += ["", "Leftover processes:", ""] + [f"- {ln}" for ln in LEFTOVERS]
    if ERRORS:
        parts += ["", "Errors:", ""] + [f"- {ln}" for ln in ERRORS]
    text = [para for s in sections for para in s.reading(results)]
    if text:
        parts += ["", "## Reading", ""]
        for para in text:
            parts += [para, ""]
    return "\n".join(parts).rstrip() + "\n"
