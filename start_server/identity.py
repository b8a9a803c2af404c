"""``--user`` and ``--group``: who the workers run as.

The starter binds, keeps its privileges (it must signal every worker and
write its files) and drops them in each child just before exec: the
supplementary groups (``initgroups``), then the gid, then the uid, in that
order because each step needs the privilege the next one gives up. The
names are resolved once at start, so a typo is one line and exit 2; the
supplementary groups are read again before every spawn, as a login would.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass

from .values import ConfigError

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional


@dataclass(frozen=True)
class Identity:
    """What a worker becomes; None fields stay as the starter's."""

    uid: Optional[int] = None
    gid: Optional[int] = None
    name: Optional[str] = None  # the user's name: supplementary groups, USER, LOGNAME
    home: Optional[str] = None
    groups: Optional[tuple[int, ...]] = None  # supplementary groups at start (a fallback)

    def environment(self) -> dict[str, str]:
        """``HOME``, ``USER`` and ``LOGNAME`` from the passwd entry (with ``--user``)."""
        if self.name is None:
            return {}
        return {"HOME": self.home or "/", "USER": self.name, "LOGNAME": self.name}

    def current_groups(self) -> Optional[tuple[int, ...]]:
        """The supplementary groups to set now (None: leave them), read again for
        each spawn so that a user added to a group gets it at the next deploy."""
        if self.groups is None or self.name is None or self.gid is None:
            return self.groups
        return supplementary(self.name, self.gid, self.groups)

    def owner(self) -> Optional[tuple[int, int]]:
        """(uid, gid) to hand files to, when the workers are another user than the starter."""
        if self.uid is None or self.uid == os.geteuid():
            return None
        return self.uid, os.getegid() if self.gid is None else self.gid


def _number(raw: str) -> Optional[int]:
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _user(raw: str) -> pwd.struct_passwd:
    try:
        number = _number(raw)
        return pwd.getpwnam(raw) if number is None else pwd.getpwuid(number)
    except (KeyError, OverflowError, ValueError):
        raise ConfigError.of("--user", raw, "no such user") from None


def _group(raw: str) -> int:
    try:
        number = _number(raw)
        return (grp.getgrnam(raw) if number is None else grp.getgrgid(number)).gr_gid
    except (KeyError, OverflowError, ValueError):
        raise ConfigError.of("--group", raw, "no such group") from None


def resolve(user: Optional[str], group: Optional[str]) -> Optional[Identity]:
    """The workers' identity from ``--user`` and ``--group`` (None: the starter's own)."""
    if user is None and group is None:
        return None
    root = os.geteuid() == 0
    gid = None if group is None else _group(group)
    if group is not None and not root and gid != os.getegid():
        raise ConfigError.of(
            "--group",
            group,
            "only root can run the workers in another group "
            f"(the starter runs as uid {os.geteuid()}, gid {os.getegid()})",
        )
    if user is None:
        return Identity(gid=gid, groups=(gid,) if root and gid is not None else None)
    pw = _user(user)
    if not root and pw.pw_uid != os.geteuid():
        raise ConfigError.of(
            "--user",
            user,
            "only root can run the workers as another user "
            f"(the starter runs as uid {os.geteuid()})",
        )
    if gid is None and root:
        gid = pw.pw_gid
    groups = None
    if root:
        assert gid is not None
        groups = supplementary(pw.pw_name, gid, ())
    return Identity(pw.pw_uid, gid, pw.pw_name, pw.pw_dir, groups)


def supplementary(name: str, gid: int, fallback: tuple[int, ...]) -> tuple[int, ...]:
    """The user's groups as ``initgroups`` would set them (``fallback`` if unreadable)."""
    try:
        return tuple(os.getgrouplist(name, gid))
    except OSError:
        return fallback


def become(ident: Identity, groups: Optional[tuple[int, ...]]) -> None:
    """In the child, before exec: groups, then gid, then uid (each needs the one after).

    ``groups`` is ``ident.current_groups()``, read in the parent before the fork.
    """
    if groups is not None:
        os.setgroups(list(groups))
    if ident.gid is not None:
        os.setgid(ident.gid)
    if ident.uid is not None:
        os.setuid(ident.uid)
