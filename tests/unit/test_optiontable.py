"""The option table: every row fills a field, the defaults are the Config's, and
a bad value's error names its option and value as fields, not only as text."""

from __future__ import annotations

import sys
from dataclasses import fields

import pytest

from start_server.config import Config, build
from start_server.optiontable import FLAG, LIST, TABLE, Option
from start_server.policy import Policy
from start_server.values import ConfigError

PROG = sys.executable


def test_every_parsed_row_fills_one_field_and_every_field_has_a_row() -> None:
    targets = {f.name for f in fields(Config)} | {f.name for f in fields(Policy)}
    filled = [o.field for o in TABLE if o.parse is not None]
    assert len(filled) == len(set(filled)), "two rows fill one field"
    assert not set(filled) - targets, "a row fills no field of Config or Policy"
    unfilled = targets - set(filled) - {"command", "policy", "user"}
    assert not unfilled, f"fields without a row: {sorted(unfilled)}"


def test_nothing_given_builds_the_default_config() -> None:
    assert build({"command": [PROG]}, {}) == Config(command=(PROG,))


PARSED = [o for o in TABLE if o.parse is not None and o.kind != FLAG]


@pytest.mark.parametrize("opt", PARSED, ids=[o.name for o in PARSED])
def test_a_bad_value_is_an_error_naming_option_and_value(opt: Option) -> None:
    bad = "/nonexistent/dir/x" if opt.metavar in ("FILE", "DIR", "PATH", "FILE|'| CMD'") else "-x"
    raw: object = (bad,) if opt.kind == LIST else bad
    with pytest.raises(ConfigError) as info:
        build({"command": [PROG], opt.name: raw}, {})
    err = info.value
    assert (err.option, err.value) == (opt.flag, bad)
    assert str(err) == f"{opt.flag}={bad}: {err.reason}"
