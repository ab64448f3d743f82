"""A tiny HTTP proxy on 127.0.0.1 that forwards to moto and records every request it relays."""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")


@dataclass(frozen=True)
class Relayed:
    method: str
    path: str
    range: str | None
    access_key: str | None  # from the SigV4 Authorization header: whose credentials signed it
    status: int
    body_bytes: int


class CountingProxy:
    """Point an AWS endpoint at ``url``; ``requests`` lists what was relayed to the real server."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self.requests: list[Relayed] = []
        lock = threading.Lock()
        log = self.requests

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    payload = answer.read()
                finally:
                    conn.close()
                match = _CREDENTIAL.search(self.headers.get("Authorization", ""))
                with lock:
                    log.append(Relayed(self.command, self.path, self.headers.get("Range"),
                                       match.group(1) if match else None, answer.status, len(payload)))
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def gets(self, key: str) -> list[Relayed]:
        return [r for r in self.requests if r.method == "GET" and urlsplit(r.path).path.endswith(key)]
