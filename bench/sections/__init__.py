"""The sections of the benchmark, in the order of the table: one module each.

To add one: write a module with measure/rows/reading (and note, details,
options where it needs them; see harness/section.py) ending in
``SECTION = Section(...)``, and add it to SECTIONS below.
"""

from __future__ import annotations

from harness.section import Section

from sections import (
    a_restart,
    b_kill,
    c_under_load,
    de_idle_rss,
    f_throughput,
    g_workers,
    hi_memory,
    j_fds,
    k_workers_cost,
    l_upgrade,
    m_rolling,
)

SECTIONS: list[Section] = [
    a_restart.SECTION,
    b_kill.SECTION,
    c_under_load.SECTION,
    de_idle_rss.SECTION,
    f_throughput.SECTION,
    g_workers.SECTION,
    hi_memory.SECTION,
    j_fds.SECTION,
    k_workers_cost.SECTION,
    l_upgrade.SECTION,
    m_rolling.SECTION,
]
