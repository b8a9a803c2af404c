"""Facts about the machine and the versions under test, for the report's header."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess

from harness.common import OURS, PERL_STARTER, PY


def _cpu_name() -> str:
    model, family, number, virtual = "?", "?", "?", False
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and model == "?":
                model = value
            elif key == "cpu family" and family == "?":
                family = value
            elif key == "model" and number == "?":
                number = value
            elif key == "flags":
                virtual = virtual or "hypervisor" in value.split()
    return f"{model}, family {family} model {number}" + (", virtual machine" if virtual else "")


def _memory() -> str:
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError), open("/proc/meminfo") as fh:
        mem = f"{int(fh.readline().split()[1]) / 1048576:.0f} GiB"
    return mem


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def machine() -> dict[str, str]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": _cpu_name(),
        "memory": _memory(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version() + f" ({PY})",
        "perl": _first_line(["perl", "-e", "print substr($^V, 1)"]),
        "server_starter": _first_line([PERL_STARTER, "--version"]),
        "ours": _first_line([*OURS, "--version"]),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
    }


def _os_name() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as fh:
        for line in fh:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "?"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine."""
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"
