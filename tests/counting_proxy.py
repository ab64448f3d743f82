"""A tiny HTTP proxy on 127.0.0.1 that forwards to moto and records every request it relays."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.local_http import LocalHTTPServer, QuietHandler, relay

_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


@dataclass(frozen=True)
class Relayed:
    method: str
    path: str
    range: str | None
    access_key: str | None  # from the SigV4 Authorization header: whose credentials signed it
    status: int
    body_bytes: int


class CountingProxy(LocalHTTPServer):
    """Point an AWS endpoint at ``url``; ``requests`` lists what was relayed to the real server."""

    def __init__(self, upstream: str) -> None:
        self.requests: list[Relayed] = []
        lock = threading.Lock()
        log = self.requests

        class Handler(QuietHandler):
            def _relay(self) -> None:
                status, headers, payload = relay(upstream, self.command, self.path, self.read_body(), self.headers)
                match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
                with lock:
                    log.append(Relayed(self.command, self.path, self.headers.get("Range"),
                                       match.group(1) if match else None, status, len(payload)))
                self.answer(status, payload, headers)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

        super().__init__(Handler)

    def gets(self, key: str) -> list[Relayed]:
        return [r for r in self.requests if r.method == "GET" and urlsplit(r.path).path.endswith(key)]
