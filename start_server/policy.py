"""The timing and signal rules of a starter, shared by the option parser and the core.

Its own module so that the clients (``--restart``, ``--stop``, ``--status``),
which build a configuration but never supervise, do not import the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from .optiontable import AUTO_KILL_OLD_DELAY, default

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional


@dataclass(frozen=True)
class Policy:
    """The timing and signal rules; ``kill_old_delay=None`` means the original's default.

    The defaults are the option table's (optiontable.py).
    """

    interval: float = default("interval")
    signal_on_hup: int = default("signal_on_hup")
    signal_on_term: int = default("signal_on_term")
    kill_old_delay: Optional[float] = default("kill_old_delay")
    auto_restart: bool = default("enable_auto_restart")
    auto_restart_interval: float = default("auto_restart_interval")
    wait_ready: bool = default("wait_ready")
    ready_timeout: float = default("ready_timeout")
    stop_timeout: Optional[float] = default("stop_timeout")
    backoff_max: float = default("backoff_max")
    # a started worker that ran this long and died is no crash loop
    min_uptime: float = default("min_uptime")
    workers: int = default("workers")
    rolling: int = default("rolling")  # K: a restart replaces K workers at a time (0: all)
    auto_restart_jitter: float = default("auto_restart_jitter")
    # bytes, per generation (per worker with workers > 1)
    max_memory: Optional[int] = default("max_memory")
    # open fds of a worker's process tree; as a fraction of the worker's RLIMIT_NOFILE
    max_open_files: Optional[int] = default("max_open_files")
    max_fd_fraction: Optional[float] = default("max_fd_fraction")
    health_check_interval: float = default("health_check_interval")

    @property
    def effective_kill_old_delay(self) -> float:
        if self.kill_old_delay is not None:
            return self.kill_old_delay
        return AUTO_KILL_OLD_DELAY if self.auto_restart else 0.0

    @property
    def counts_fds(self) -> bool:
        """Whether a health check counts open fds (an fd limit is set)."""
        return self.max_open_files is not None or self.max_fd_fraction is not None

    @property
    def checks_health(self) -> bool:
        """Whether workers are measured at all, every ``health_check_interval``."""
        return self.max_memory is not None or self.counts_fds

    def fd_limit(self, nofile: Optional[int]) -> Optional[tuple[int, str]]:
        """The fd limit of a worker whose soft RLIMIT_NOFILE is ``nofile`` (None:
        unknown), and how to name it in a log line; the lower of the two options."""
        limits = []
        if self.max_open_files is not None:
            limits.append((self.max_open_files, f"--max-open-files {self.max_open_files}"))
        if self.max_fd_fraction is not None and nofile is not None:
            n = int(self.max_fd_fraction * nofile)
            limits.append((n, f"{n} (--max-fd-fraction {self.max_fd_fraction:g} of {nofile})"))
        return min(limits) if limits else None

    @property
    def not_ready_grace(self) -> float:
        """How long a worker stopped for not being ready gets before SIGKILL."""
        return self.stop_timeout if self.stop_timeout is not None else 10.0
