"""The --port grammar, signal names, numbers and the env string (start_server.spec)."""

from __future__ import annotations

import math
import signal
from typing import Optional, Union

import pytest

from start_server.spec import (
    PathSpec,
    PortSpec,
    check_fd_collisions,
    parse_count,
    parse_port,
    parse_signal,
    parse_size,
    port_env,
    signal_name,
)
from start_server.values import SpecError, parse_seconds

# ---- the port grammar ----------------------------------------------------------------

# raw spec -> (port, host, udp, fd, ipv6, env key)
VALID: list[tuple[str, int, Optional[str], bool, Optional[int], bool, str]] = [
    ("8080", 8080, None, False, None, False, "8080"),
    ("0", 0, None, False, None, False, "0"),
    ("65535", 65535, None, False, None, False, "65535"),
    ("u443", 443, None, True, None, False, "443"),
    ("8080=3", 8080, None, False, 3, False, "8080"),
    ("8080=0", 8080, None, False, 0, False, "8080"),
    ("u53=7", 53, None, True, 7, False, "53"),
    ("127.0.0.1:8080", 8080, "127.0.0.1", False, None, False, "127.0.0.1:8080"),
    ("localhost:8080", 8080, "localhost", False, None, False, "localhost:8080"),
    ("0.0.0.0:u443", 443, "0.0.0.0", True, None, False, "0.0.0.0:443"),
    ("127.0.0.1:8080=5", 8080, "127.0.0.1", False, 5, False, "127.0.0.1:8080"),
    ("[::1]:8080", 8080, "::1", False, None, True, "[::1]:8080"),
    ("[::]:u53", 53, "::", True, None, True, "[::]:53"),
    ("[::1]:8080=5", 8080, "::1", False, 5, True, "[::1]:8080"),
    ("[2001:db8::1]:80", 80, "2001:db8::1", False, None, True, "[2001:db8::1]:80"),
    # The address is kept as written (the original does not canonicalise it).
    ("[0:0::1]:80", 80, "0:0::1", False, None, True, "[0:0::1]:80"),
    # Like the original's regex, an unbracketed IPv6 address splits at the last colon.
    ("::1:8080", 8080, "::1", False, None, True, "[::1]:8080"),
    # White space where the original's regexes allow it.
    ("  8080  ", 8080, None, False, None, False, "8080"),
    ("\t8080 =3\n", 8080, None, False, 3, False, "8080"),
    (" u443 ", 443, None, True, None, False, "443"),
    (" 127.0.0.1: 8080 ", 8080, "127.0.0.1", False, None, False, "127.0.0.1:8080"),
    ("127.0.0.1:u8080 =4", 8080, "127.0.0.1", True, 4, False, "127.0.0.1:8080"),
    ("[ ::1] :8080", 8080, "::1", False, None, True, "[::1]:8080"),
    # Brackets may hold any host, and an unbalanced one is tolerated, as the
    # original's regex does (checked against /usr/bin/start_server).
    ("[127.0.0.1]:8080", 8080, "127.0.0.1", False, None, False, "127.0.0.1:8080"),
    ("[localhost]:u53", 53, "localhost", True, None, False, "localhost:53"),
    ("[::1:8080", 8080, "::1", False, None, True, "[::1]:8080"),
    ("[127.0.0.1:8080", 8080, "127.0.0.1", False, None, False, "127.0.0.1:8080"),
    ("127.0.0.1]:8080", 8080, "127.0.0.1", False, None, False, "127.0.0.1:8080"),
    ("[::1]: u8080", 8080, "::1", True, None, True, "[::1]:8080"),
]


@pytest.mark.parametrize("case", VALID, ids=[c[0] for c in VALID])
def test_parse_port_valid(
    case: tuple[str, int, Optional[str], bool, Optional[int], bool, str],
) -> None:
    raw, port, host, udp, fd, ipv6, key = case
    spec = parse_port(raw)
    assert (spec.port, spec.host, spec.udp, spec.fd, spec.ipv6) == (port, host, udp, fd, ipv6)
    assert spec.key == key
    assert spec.raw == raw.strip()


def test_bind_host_defaults_to_ipv4_any() -> None:
    assert parse_port("8080").bind_host == "0.0.0.0"
    assert parse_port("127.0.0.1:8080").bind_host == "127.0.0.1"
    assert parse_port("[::1]:8080").bind_host == "::1"


def test_udp_key_drops_the_u_like_the_original() -> None:
    assert parse_port("u443").key == parse_port("443").key == "443"
    assert parse_port("0.0.0.0:u443").key == "0.0.0.0:443"
    assert parse_port("[::1]:u443").key == "[::1]:443"


def test_raw_does_not_take_part_in_equality() -> None:
    assert parse_port(" 8080 ") == parse_port("8080")
    assert parse_port("8080") != parse_port("u8080")


INVALID = [
    "",
    "   ",
    "abc",
    "8080x",
    "x8080",
    "uu80",
    "u",
    "-1",
    "80=",
    "80=abc",
    "80=-1",
    "80=3=4",
    "host:",
    ":",
    ":80",  # empty host
    "[]:80",  # empty host
    "[ ]:80",
    "[::g]:80",  # bad IPv6
    "[1:2]:80",
    "[:::1]:80",
    "a:b:80",  # a colon in the host makes it IPv6, and this is none
    "1.2.3.4:80:90",
    "[ ::1 ] :80",  # the original's greedy host keeps the blank: "::1 " is no address
    "127.0.0.1 :80",  # and "127.0.0.1 " is no host
    "80= 3",  # no blank after "=" (the original's regex)
    "127.0.0.1:80= 3",
    "\uff18\uff10",  # fullwidth digits: the original reads bytes, \d is ASCII there
    "127.0.0.1:\u0668\u0660",  # Arabic-Indic digits
    "80=\uff13",
    "[fe80::1%lo]:80",  # a scope id: inet_pton refuses it, as in the original
    "80=2147483648",  # an fd beyond a C int
    "80=99999999999999999999",
    "host name:80",  # white space inside the host
    "65536",  # out of range
    "99999",
    "u65536",
    "127.0.0.1:70000",
    "[::1]:65536",
    "8080 8081",
    "8080;8081",
]


@pytest.mark.parametrize("raw", INVALID)
def test_parse_port_invalid(raw: str) -> None:
    with pytest.raises(SpecError):
        parse_port(raw)


def test_invalid_messages_name_the_value() -> None:
    with pytest.raises(SpecError, match="empty host"):
        parse_port(":80")
    with pytest.raises(SpecError, match="IPv6"):
        parse_port("[::g]:80")
    with pytest.raises(SpecError, match=r"65536 out of range"):
        parse_port("65536")
    with pytest.raises(SpecError, match="'garbage'"):
        parse_port("garbage")


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_path_spec_key_is_the_path_as_given() -> None:
    assert PathSpec("/run/app.sock").key == "/run/app.sock"
    assert PathSpec("rel/app.sock").key == "rel/app.sock"


# ---- fd collisions -------------------------------------------------------------------


def test_fd_collision_is_an_error_naming_both() -> None:
    specs = [parse_port("8080=3"), parse_port("127.0.0.1:8081=4"), parse_port("[::1]:8082=3")]
    with pytest.raises(SpecError, match=r"fd 3 .*'8080'.*'\[::1\]:8082'"):
        check_fd_collisions(specs)


def test_fd_zero_collides_too() -> None:
    with pytest.raises(SpecError, match="fd 0"):
        check_fd_collisions([parse_port("80=0"), parse_port("u80=0")])


def test_distinct_or_absent_fds_do_not_collide() -> None:
    check_fd_collisions([])
    check_fd_collisions([parse_port("8080"), parse_port("8081"), parse_port("u8080")])
    check_fd_collisions([parse_port("8080=3"), parse_port("8081=4"), parse_port("8082")])


# ---- the env string ------------------------------------------------------------------


def test_port_env_joins_in_order() -> None:
    items = [("8080", 3), ("127.0.0.1:8081", 4), ("/run/app.sock", 5)]
    assert port_env(items) == "8080=3;127.0.0.1:8081=4;/run/app.sock=5"


def test_port_env_empty_and_single() -> None:
    assert port_env([]) == ""
    assert port_env([("[::1]:80", 0)]) == "[::1]:80=0"


def test_port_env_uses_the_spec_keys() -> None:
    specs: list[Union[PortSpec, PathSpec]] = [
        parse_port("u443=3"),
        parse_port("[::1]:80"),
        PathSpec("/tmp/s.sock"),
    ]
    items = [(s.key, 3 + i) for i, s in enumerate(specs)]
    assert port_env(items) == "443=3;[::1]:80=4;/tmp/s.sock=5"


# ---- signals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("TERM", signal.SIGTERM),
        ("SIGTERM", signal.SIGTERM),
        ("term", signal.SIGTERM),
        ("sigterm", signal.SIGTERM),
        ("SigTerm", signal.SIGTERM),
        ("15", signal.SIGTERM),
        (" TERM ", signal.SIGTERM),
        ("USR1", signal.SIGUSR1),
        ("SIGUSR1", signal.SIGUSR1),
        ("usr1", signal.SIGUSR1),
        ("sigusr1", signal.SIGUSR1),
        ("HUP", signal.SIGHUP),
        ("1", signal.SIGHUP),
        ("QUIT", signal.SIGQUIT),
        ("INT", signal.SIGINT),
        ("KILL", signal.SIGKILL),
        ("9", signal.SIGKILL),
        ("WINCH", signal.SIGWINCH),
    ],
)
def test_parse_signal(raw: str, expected: signal.Signals) -> None:
    got = parse_signal(raw)
    assert got is expected
    assert isinstance(got, signal.Signals)


@pytest.mark.parametrize("raw", ["", "   ", "FOO", "SIGFOO", "0", "999", "-15", "TERM1", "SIG"])
def test_parse_signal_unknown(raw: str) -> None:
    with pytest.raises(SpecError):
        parse_signal(raw)


def test_parse_signal_message_names_the_value() -> None:
    with pytest.raises(SpecError, match="'BOGUS'"):
        parse_signal("BOGUS")
    with pytest.raises(SpecError, match="999"):
        parse_signal("999")


def test_signal_name() -> None:
    assert signal_name(signal.SIGTERM) == "TERM"
    assert signal_name(15) == "TERM"
    assert signal_name(signal.SIGKILL) == "KILL"
    assert signal_name(999) == "999"


# ---- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1.0),
        ("0.2", 0.2),
        (".5", 0.5),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("1e3", 1000.0),
        (3, 3.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_seconds(raw: Union[str, float], expected: float) -> None:
    got = parse_seconds(raw)
    assert got == expected
    assert isinstance(got, float)


@pytest.mark.parametrize(
    "raw",
    [
        "-1",
        "-0.1",
        -1,
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        math.inf,
        math.nan,
        "abc",
        "",
        "1s",
        "1,5",
        True,
        False,
    ],
)
def test_parse_seconds_invalid(raw: Union[str, float]) -> None:
    with pytest.raises(SpecError):
        parse_seconds(raw)


def test_parse_seconds_allow_zero() -> None:
    assert parse_seconds("0", allow_zero=True) == 0.0
    assert parse_seconds("0.001", allow_zero=False) == 0.001
    with pytest.raises(SpecError, match="> 0"):
        parse_seconds("0", allow_zero=False)
    with pytest.raises(SpecError, match="> 0"):
        parse_seconds(0.0, allow_zero=False)
    with pytest.raises(SpecError, match=">= 0"):
        parse_seconds("-1")


@pytest.mark.parametrize(
    ("raw", "minimum", "expected"),
    [("5", 0, 5), (" 7 ", 0, 7), (0, 0, 0), ("1", 1, 1), (128, 1, 128), ("-3", -5, -3)],
)
def test_parse_count(raw: Union[str, int], minimum: int, expected: int) -> None:
    assert parse_count(raw, minimum=minimum) == expected


@pytest.mark.parametrize(
    ("raw", "minimum"),
    [("-1", 0), ("0", 1), ("1.5", 0), ("abc", 0), ("", 0), ("1e3", 0), (True, 0), (False, 0)],
)
def test_parse_count_invalid(raw: Union[str, int], minimum: int) -> None:
    with pytest.raises(SpecError):
        parse_count(raw, minimum=minimum)


def test_parse_count_default_minimum_is_zero() -> None:
    assert parse_count("0") == 0
    with pytest.raises(SpecError, match=">= 0"):
        parse_count("-1")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1048576", 1048576),
        (4096, 4096),
        ("1", 1),
        ("10K", 10 * 1024),
        ("10k", 10 * 1024),
        ("10KB", 10 * 1024),
        ("10KiB", 10 * 1024),
        ("400M", 400 * 1024**2),
        ("400mb", 400 * 1024**2),
        ("1.5G", 3 * 1024**3 // 2),
        ("2T", 2 * 1024**4),
        (" 8 M ", 8 * 1024**2),
        ("100B", 100),
    ],
)
def test_parse_size(raw: Union[str, int], expected: int) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize(
    "raw", ["", "abc", "10X", "-1", "-1M", "0", "0M", "0.0001K", "M", "1.M", "1 2M"]
)
def test_parse_size_invalid(raw: str) -> None:
    with pytest.raises(SpecError):
        parse_size(raw)


def test_key_keeps_the_port_as_written() -> None:
    """Perl 0.35 builds the key from the matched text: ``--port=08080`` exports ``08080=3``.

    (Checked against /usr/bin/start_server: ``0.0.0.0:u035791`` -> ``0.0.0.0:035791=4``.)
    A server looking its socket up by the spelling on the command line must find it.
    """
    assert parse_port("08080").key == "08080"
    assert parse_port("0.0.0.0:u035791").key == "0.0.0.0:035791"
    assert parse_port("[::1]:08080").key == "[::1]:08080"
    assert parse_port("08080").port == 8080
