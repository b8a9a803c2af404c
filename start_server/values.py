"""Option values every command reads, the clients included: kept free of heavy
imports (no dataclasses, no typing at run time) because ``start_server
--restart`` pays for every module it loads on every deploy."""

from __future__ import annotations

import math

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Union


class ConfigError(Exception):
    """Bad input: one line naming the option and the value; exit status 2."""


class SpecError(ValueError):
    """A value that does not fit its grammar; the message names the value."""


def option_value(options: Mapping[str, Any], name: str) -> Any:
    """An option's raw value; None when not given (click gives ``()`` for a list)."""
    value = options.get(name)
    return None if value is None or value == () else value


def parse_seconds(raw: Union[str, float, int], *, allow_zero: bool = True) -> float:
    """A non-negative number of seconds; fractions allowed (``0.2``)."""
    if isinstance(raw, bool):
        raise SpecError(f"not a number of seconds: {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SpecError(f"not a number of seconds: {raw!r}") from None
    if not math.isfinite(value):
        raise SpecError(f"not a finite number of seconds: {raw!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"must be {'>= 0' if allow_zero else '> 0'}, got {raw!r}")
    return value



def seconds_value(name: str, raw: Any, default: float, *, allow_zero: bool = True) -> float:
    """``raw`` of option (or variable) ``name`` as seconds; ``default`` when absent.

    An empty value is an error, not the default.
    """
    if raw is None:
        return default
    try:
        return parse_seconds(raw, allow_zero=allow_zero)
    except SpecError as exc:
        raise ConfigError(f"{name}={raw}: {exc}") from None
