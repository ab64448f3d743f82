"""A real HTTP proxy on 127.0.0.1 in front of moto that makes some ``PutRecords`` entries fail.

In every odd-numbered PutRecords call, every ``every``-th entry is held back (never sent to the stream) and the
response marks it ``ProvisionedThroughputExceededException`` at its position, as Kinesis does in a partial
failure; ``always=True`` does it in every call (nothing ever gets through those positions).
Every other request passes through unchanged.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port

THROTTLED = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}


class FlakyKinesisProxy:
    def __init__(self, upstream: str, *, every: int = 3, always: bool = False) -> None:
        self.upstream = upstream
        self.always = always
        self.every = every
        self.put_calls = 0
        self.entries_failed = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                status, payload = proxy.handle(target, body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyKinesisProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def forward(self, body: bytes, headers: dict) -> tuple[int, bytes]:
        headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(self.upstream, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def handle(self, target: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        if not target.endswith(".PutRecords"):
            return self.forward(body, headers)
        with self.lock:
            self.put_calls += 1
            flaky = self.always or self.put_calls % 2 == 1
        request = json.loads(body)
        records = request["Records"]
        failed = {i for i in range(len(records)) if flaky and i % self.every == 0}
        kept = [r for i, r in enumerate(records) if i not in failed]
        results = iter([])
        if kept:
            status, payload = self.forward(json.dumps({**request, "Records": kept}).encode(), headers)
            if status != 200:
                return status, payload
            results = iter(json.loads(payload)["Records"])
        entries = [dict(THROTTLED) if i in failed else next(results) for i in range(len(records))]
        with self.lock:
            self.entries_failed += len(failed)
        return 200, json.dumps({"FailedRecordCount": len(failed), "Records": entries}).encode()
