"""What /proc says about a process (memory, context switches, CPU time, children) or
the machine's CPU time, and which processes carry this run's token."""

from __future__ import annotations

import os

from harness.common import TOKEN, TOKEN_VAR


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def vmrss_kb(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def ctx_switches(pid: int) -> int:
    """Voluntary + nonvoluntary context switches, summed over the process's threads."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            continue  # the thread just exited
        for line in lines:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def children(ppid: int) -> list[int]:
    """Live (non-zombie) children of ``ppid``, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[1]) == ppid:
            out.append(int(name))
    return sorted(out)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_total() -> tuple[int, int, int]:
    """(busy, irq + softirq, all) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user .. steal (guest time is already in user)
    return total - idle, fields[5] + fields[6], total


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def is_zombie(pid: int) -> bool:
    try:
        return proc_status(pid).get("State", "").startswith("Z")
    except OSError:
        return True


def token_pids() -> list[int]:
    """Processes whose environment carries this run's token."""
    needle = f"{TOKEN_VAR}={TOKEN}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    out.append(int(name))
        except OSError:
            continue
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages divided among their users), in kB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
