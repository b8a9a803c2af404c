"""The clients of requests with an argument: ``--scale N|+K|-K`` and ``--restart
--worker I``.

The request goes to the running starter's control socket (control_socket.py),
named in its status JSON; the client first checks that it is a socket of root
or of the starter's user, so that a status file someone replaced cannot send
it elsewhere. It then waits, like ``--restart``, on the status JSON for the
request's answer: ``done`` (exit 0), ``failed`` or ``refused`` (exit 1), or
its deadline (``--timeout``, exit 1). Bad input is exit 2, before anything is
sent: a value that is no count or slot, or out of range for the count the
status JSON shows.
"""

from __future__ import annotations

import os
import socket
import stat
import sys

from .control import ControlError, _starter_pid, _text, _whole, await_answer
from .control_socket import request
from .files import json_path, read_json
from .optiontable import MAX_WORKERS
from .scaling import parse_scale, scaled
from .values import ConfigError, SpecError, fail, parse_whole

TYPE_CHECKING = False  # typing costs the client milliseconds at every deploy
if TYPE_CHECKING:
    from typing import Any, Optional

    from .control import ClientOptions

_OPTION = {"scale": "--scale", "worker": "--worker"}


def check_request(kind: str, value: str) -> None:
    """The value's grammar and absolute bounds; ConfigError (exit 2) otherwise."""
    try:
        if kind == "scale":
            parse_scale(value)
        else:
            parse_whole(value, minimum=0, maximum=MAX_WORKERS - 1)
    except SpecError as exc:
        raise ConfigError.of(_OPTION[kind], value, str(exc)) from None


def _in_range(kind: str, value: str, workers: Optional[int]) -> None:
    """Bad input for the count the starter shows: one line, exit 2."""
    if workers is None:
        return  # an older starter: it answers for itself
    try:
        if kind == "scale":
            scaled(workers, *parse_scale(value))
        elif int(value) >= workers:
            raise SpecError(f"there is no worker {int(value)} (workers 0..{workers - 1})")
    except SpecError as exc:
        fail(f"{_OPTION[kind]}={value}: {exc}", 2)


def _address(detail: dict[str, Any], pid: int) -> str:
    """The control socket's address, checked to be the starter's."""
    address = detail.get("control_socket")
    if not isinstance(address, str) or not address:
        raise ControlError(
            f"start_server (pid {pid}) takes no requests: it is an older version, "
            "or it could not open its control socket (see its log)"
        )
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract: the starter checks who sends
    try:
        st = os.lstat(address)
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError as exc:
        raise ControlError(f"control socket {address}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid not in (0, owner):
        raise ControlError(
            f"control socket {address}: not a socket of start_server's user; not sending"
        )
    return address


def _answer(status_file: str, id: str) -> tuple[str, str]:
    detail = read_json(json_path(status_file)) or {}
    listed = detail.get("requests")
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, dict) and item.get("id") == id:
            return _text(item.get("state"), 20), _text(item.get("message"), 200)
    return "", ""


def ask(config: ClientOptions) -> int:
    """Send the request, wait for its answer in the status JSON."""
    assert config.pid_file and config.status_file and config.request
    kind, value = config.request
    pid = _starter_pid(config.pid_file)
    detail = read_json(json_path(config.status_file))
    if detail is None:
        raise ControlError(
            f"--status-file={config.status_file}: nothing written yet "
            "(is the starter still starting?)"
        )
    _in_range(kind, value, _whole(detail.get("workers"), MAX_WORKERS))
    address = _address(detail, pid)
    id = os.urandom(8).hex()
    status_file = config.status_file
    said = ""

    def answer() -> Optional[int]:
        nonlocal said
        state, said = _answer(status_file, id)
        if state == "done":
            print(f"start_server: {said}", file=sys.stderr)
            return 0
        if state in ("failed", "refused"):
            raise ControlError(said or f"the request was {state}")
        return None

    def timed_out() -> str:
        so_far = f" (so far: {said})" if said else " (no answer: is it busy?)"
        return f"timed out after {config.timeout:g} s{so_far}"

    return await_answer(config, pid, lambda: _send(address, request(id, kind, value)),
                        answer, what="the request", timed_out=timed_out)


def _send(address: str, data: bytes) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(data, address)
        except OSError as exc:
            shown = address.replace("\0", "@")
            raise ControlError(
                f"control socket {shown}: {exc.strerror or exc} (is an upgrade under way?)"
            ) from None
