"""identity.py: --user and --group resolved from the real passwd and group databases."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from start_server.identity import Identity, resolve
from start_server.values import ConfigError

NOBODY = pwd.getpwnam("nobody")


def test_nothing_given_is_the_starters_own_identity() -> None:
    assert resolve(None, None) is None


@pytest.mark.parametrize("user", ["nobody", str(NOBODY.pw_uid)])
def test_a_user_by_name_or_uid_brings_its_gid_groups_and_home(user: str) -> None:
    assert os.geteuid() == 0, "the suite runs as root"
    ident = resolve(user, None)
    assert ident is not None
    assert (ident.uid, ident.gid, ident.name, ident.home) == (
        NOBODY.pw_uid, NOBODY.pw_gid, "nobody", NOBODY.pw_dir)
    assert ident.groups == tuple(os.getgrouplist("nobody", NOBODY.pw_gid))
    assert ident.environment() == {"HOME": NOBODY.pw_dir, "USER": "nobody", "LOGNAME": "nobody"}
    assert ident.owner() == (NOBODY.pw_uid, NOBODY.pw_gid)


def test_group_overrides_the_users_primary_group() -> None:
    root_group = grp.getgrgid(0).gr_name
    ident = resolve("nobody", root_group)
    assert ident is not None and ident.gid == 0 and ident.uid == NOBODY.pw_uid
    assert 0 in (ident.groups or ())


def test_group_alone_sets_only_the_groups() -> None:
    ident = resolve(None, str(NOBODY.pw_gid))
    assert ident == Identity(gid=NOBODY.pw_gid, groups=(NOBODY.pw_gid,))
    assert ident.environment() == {} and ident.owner() is None


def test_root_as_user_hands_nothing_over() -> None:
    ident = resolve("root", None)
    assert ident is not None and ident.owner() is None


@pytest.mark.parametrize(
    ("user", "group", "message"),
    [
        ("no-such-user-b4d", None, "--user=no-such-user-b4d: no such user"),
        ("3999999999", None, "--user=3999999999: no such user"),
        ("99999999999999999999999", None, "--user=99999999999999999999999: no such user"),
        ("١٢", None, "--user=١٢: no such user"),  # not ASCII digits: a name, and unknown
        (None, "no-such-group-b4d", "--group=no-such-group-b4d: no such group"),
        (None, "3999999999", "--group=3999999999: no such group"),
    ],
)
def test_unknown_users_and_groups_are_one_clear_error(
    user: str | None, group: str | None, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(user, group)
    assert str(info.value) == message
