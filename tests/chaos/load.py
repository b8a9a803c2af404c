"""Continuous loopback client load that remembers who answered each request.

tests/apps/app.py answers ``gen=G pid=P``, so a success names its worker. A
failure cannot (the connection dies before any byte comes back), so it is kept
with its time span and judged later against the kills the schedule made.
"""

from __future__ import annotations

import http.client
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass

BODY = re.compile(r"^gen=(\d+) pid=(\d+)$")


@dataclass(frozen=True)
class Failure:
    start: float  # time.monotonic() when the request began
    end: float  # ... and when it failed
    kind: str  # "refused", "dropped" (accepted, then no answer) or "bad"
    detail: str


class Load:
    """``clients`` threads, one new connection per request, until ``stop()``."""

    def __init__(self, port: int, clients: int = 6, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self._stop = threading.Event()
        self.lock = threading.Lock()
        self.answered: Counter[tuple[int, int]] = Counter()  # (generation, pid) -> answers
        self.failures: list[Failure] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(self.timeout + 10)
        assert not any(t.is_alive() for t in self.threads), "a client thread hangs"

    @property
    def served(self) -> int:
        with self.lock:
            return sum(self.answered.values())

    def _client(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            failure = self._request()
            if failure is not None:
                with self.lock:
                    self.failures.append(Failure(start, time.monotonic(), *failure))

    def _request(self) -> tuple[str, str] | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        responded = False
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            responded = True
            body = resp.read().decode().strip()
        except ConnectionRefusedError as exc:
            return "refused", repr(exc)
        except (OSError, http.client.HTTPException) as exc:
            return ("bad" if responded else "dropped"), repr(exc)
        finally:
            conn.close()
        m = BODY.match(body)
        if resp.status != 200 or not m:
            return "bad", f"HTTP {resp.status} {body!r}"
        with self.lock:
            self.answered[int(m.group(1)), int(m.group(2))] += 1
        return None
