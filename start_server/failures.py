"""What the core remembers of failed starts: the newest one (for the status
files) and whether anything ever started or served (for exit codes and the
hint on what usually keeps a first generation from starting)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

HINT_AFTER_FAILURES = 3  # failed first starts before the log says what usually causes them

# The fields as the upgrade hand-over names them (flat, in the core's dict).
_KEYS = (
    ("number", "failed_number"), ("reason", "failed_reason"), ("at", "failed_at"),
    ("ever_started", "ever_started"), ("has_served", "has_served"),
)


class FailureRecord:
    def __init__(self) -> None:
        self.number: Optional[int] = None  # newest generation that failed to start
        self.reason = ""
        self.at: Optional[float] = None  # when it failed (None: not known)
        self.ever_started = False  # a generation has started once
        self.has_served = False  # a worker ran past --min-uptime, or was replaced by a restart

    def failed(self, number: int, reason: str, at: Optional[float] = None) -> None:
        self.number, self.reason = number, reason
        if at is not None:
            self.at = at

    def hint_due(self, failures: int, serving: bool) -> bool:
        """The hint is logged once, at the third failure in a row with nothing served."""
        return failures == HINT_AFTER_FAILURES and not (self.has_served or serving)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, name) for name, key in _KEYS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FailureRecord:
        rec = cls()
        for name, key in _KEYS:
            if key in d:
                setattr(rec, name, d[key])
        return rec


def never_started_hint(failures: int, port_env: str, wait_ready: bool) -> str:
    """One line on what usually keeps the first generation from starting."""
    causes = ["the command exits at once (run it by hand to see why)"]
    if port_env:
        first = port_env.split(";", maxsplit=1)[0]
        causes.append(
            "the app binds the port itself ('Address already in use') instead of "
            f"using the socket it inherits: SERVER_STARTER_PORT={port_env} "
            f"(fd {first.rsplit('=', 1)[1]} for {first.rsplit('=', 1)[0]}; "
            "listen_from_env() in Python)"
        )
    if wait_ready:
        causes.append("with --wait-ready, it never sends READY=1 to NOTIFY_SOCKET")
    return (
        f"hint: nothing has served after {failures} attempts; usually "
        + "; or ".join(causes)
    )
