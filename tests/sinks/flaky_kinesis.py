"""A real HTTP proxy on 127.0.0.1 in front of moto that makes some ``PutRecords`` entries fail.

In every odd-numbered PutRecords call, every ``every``-th entry is held back (never sent to the stream) and the
response marks it ``ProvisionedThroughputExceededException`` at its position, as Kinesis does in a partial
failure; ``always=True`` does it in every call (nothing ever gets through those positions).
Every other request passes through unchanged.
"""

from __future__ import annotations

import json
import threading

from tests.local_http import LocalHTTPServer, QuietHandler, relay

THROTTLED = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}


class FlakyKinesisProxy(LocalHTTPServer):
    def __init__(self, upstream: str, *, every: int = 3, always: bool = False) -> None:
        self.upstream = upstream
        self.always = always
        self.every = every
        self.put_calls = 0
        self.entries_failed = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def do_POST(self):
                target = self.headers.get("X-Amz-Target", "")
                status, payload = proxy.handle(target, self.read_body(), self.headers)
                self.answer(status, payload, [("Content-Type", "application/x-amz-json-1.1")])

        super().__init__(Handler)

    def forward(self, body: bytes, headers) -> tuple[int, bytes]:
        status, _, payload = relay(self.upstream, "POST", "/", body, headers)
        return status, payload

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
