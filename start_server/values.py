"""Option values every command reads, the clients included: kept free of heavy
imports (no dataclasses, no typing at run time) because ``start_server
--restart`` pays for every module it loads on every deploy.

Every number the starter takes, from any source (an option, a variable, an
envdir file, a config file), goes through ``parse_seconds`` or ``parse_whole``:
ASCII digits only, finite, non-negative, and at most a documented maximum, so
that no value can overflow a timeout, a C int or a kernel call later.
"""

from __future__ import annotations

import math
import re
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, NoReturn, Optional, Union

# The longest delay or timeout: one year. Longer ones are typing errors, and
# every deadline the loop computes stays far inside what a timeout can hold.
MAX_SECONDS = 365 * 24 * 3600

# The default deadline of --restart and --stop (here, not in the option table,
# because the clients' quick path loads no more than this module).
CLIENT_TIMEOUT = 60.0

# A decimal number as people write one: ASCII digits, an optional fraction and
# exponent; no "inf", "nan", "1_000" or non-ASCII digits (Python's float() takes them).
_DECIMAL = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII)
_WHOLE = re.compile(r"\s*([+-]?)(\d+)\s*", re.ASCII)


class ConfigError(Exception):
    """Bad input: one line naming the option and the value; exit status 2.

    ``option`` (``--port``, ``command``, a variable such as ``KILL_OLD_DELAY``),
    ``value`` (None for a flag or a missing value) and ``reason`` are kept apart,
    so that a config file's error can name the line the value came from.
    """

    def __init__(
        self,
        message: str,
        option: Optional[str] = None,
        value: Any = None,
        reason: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.option = option
        self.value = value
        self.reason = message if reason is None else reason

    @classmethod
    def of(cls, option: str, value: Any, reason: str) -> ConfigError:
        """``--option=value: reason`` (``--option: reason`` without a value)."""
        head = option if value is None else f"{option}={value}"
        return cls(f"{head}: {reason}", option, value, reason)


def one_line(message: str) -> str:
    """``message`` with every unprintable character escaped: a value holding a
    newline (or a terminal escape) must not break the one-line rule."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)


def fail(message: str, code: int) -> NoReturn:
    """``start_server: message`` on stderr, and exit with ``code``."""
    sys.stderr.write(f"start_server: {one_line(message)}\n")
    sys.stderr.flush()
    sys.exit(code)


class SpecError(ValueError):
    """A value that does not fit its grammar; the message names the value."""


def option_value(options: Mapping[str, Any], name: str) -> Any:
    """An option's raw value; None when not given (click gives ``()`` for a list)."""
    value = options.get(name)
    return None if value is None or value == () else value


def is_decimal(text: str) -> bool:
    """Is ``text`` a decimal number as ``parse_seconds`` takes one (ASCII, finite)?"""
    return _DECIMAL.fullmatch(text) is not None


def parse_seconds(
    raw: Union[str, float, int], *, allow_zero: bool = True, maximum: float = MAX_SECONDS
) -> float:
    """A non-negative number of seconds, at most ``maximum``; fractions allowed (``0.2``)."""
    if isinstance(raw, bool):
        raise SpecError(f"not a number of seconds: {raw!r}")
    if isinstance(raw, (int, float)):
        value = float(raw) if not isinstance(raw, int) or abs(raw) < 2**64 else math.inf
    elif isinstance(raw, str) and is_decimal(raw):
        value = float(raw)
    else:
        raise SpecError(f"not a number of seconds: {raw!r}")
    if math.isnan(value):
        raise SpecError(f"not a finite number of seconds: {raw!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"must be {'>= 0' if allow_zero else '> 0'}, got {raw!r}")
    if value > maximum:
        raise SpecError(f"must be <= {maximum:.10g} seconds{_year(maximum)}, got {raw!r}")
    return value


def _year(maximum: float) -> str:
    return " (one year)" if maximum == MAX_SECONDS else ""


def parse_whole(raw: Union[str, int], *, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
    """A whole number from ``minimum`` to ``maximum`` (ASCII digits; a C int by default)."""
    if isinstance(raw, bool):
        raise SpecError(f"not a whole number: {raw!r}")
    if isinstance(raw, int):
        value = raw
    else:
        m = _WHOLE.fullmatch(raw) if isinstance(raw, str) else None
        if m is None:
            raise SpecError(f"not a whole number: {raw!r}")
        digits = m.group(2).lstrip("0") or "0"
        if len(digits) > 30:  # int() of thousands of digits is slow, then refused
            raise SpecError(f"must be <= {maximum}, got {raw!r}")
        value = int(m.group(1) + digits)
    if value < minimum:
        raise SpecError(f"must be >= {minimum}, got {raw!r}")
    if value > maximum:
        raise SpecError(f"must be <= {maximum}, got {raw!r}")
    return value


def seconds_value(
    name: str,
    raw: Any,
    default: float,
    *,
    allow_zero: bool = True,
    maximum: float = MAX_SECONDS,
) -> float:
    """``raw`` of option (or variable) ``name`` as seconds; ``default`` when absent.

    An empty value is an error, not the default.
    """
    if raw is None:
        return default
    try:
        return parse_seconds(raw, allow_zero=allow_zero, maximum=maximum)
    except SpecError as exc:
        raise ConfigError.of(name, raw, str(exc)) from None
