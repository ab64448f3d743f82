"""A small HTTP server speaking the SageMaker container contract (GET /ping, POST /invocations)."""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_provider_osml.models.base import Model, ModelResponse
from airflow_provider_osml.models.codec import TileDecodeError, decode_tile

__all__ = [
    "CUSTOM_ATTRIBUTES_HEADER",
    "ModelServer",
    "decode_tile",
    "is_loopback",
    "parse_custom_attributes",
]

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
PARSE_ERROR = b"Unable to parse image from request!"
PROCESS_ERROR = b"Unable to process request."
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
MAX_BODY_BYTES = 256 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 120.0


def parse_custom_attributes(header: str | None) -> dict[str, str]:
    """Parse ``k1=v1,k2=v2`` (the SageMaker CustomAttributes header) into a dict; other entries are ignored."""
    options: dict[str, str] = {}
    for item in (header or "").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            options[key.strip()] = value.strip()
    return options


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ModelServer) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.owner = owner
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a DNS lookup that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Connections dropped by clients or by stop() are normal here: no tracebacks on stderr.
        log.debug("error while serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # TCP_NODELAY: avoids ~40 ms delayed-ACK stalls on loopback
    timeout = IDLE_TIMEOUT_SECONDS
    server_version = "osml-reference-model/1.0"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def do_GET(self) -> None:
        if self.route == "/ping":
            self._reply(200, b"\n", TEXT)
        elif self.route == "/invocations":
            self._reply(405, b"Method Not Allowed", TEXT)
        else:
            self._reply(404, b"Not Found", TEXT)

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except _BadRequest as err:
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._reply(err.status, str(err).encode(), TEXT)
            return
        if self.route == "/invocations":
            self._reply(*self.server.owner._invoke(body, self.headers.get(CUSTOM_ATTRIBUTES_HEADER)))
        elif self.route == "/ping":
            self._reply(405, b"Method Not Allowed", TEXT)
        else:
            self._reply(404, b"Not Found", TEXT)

    def _read_body(self) -> bytes:
        limit = self.server.owner.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError as err:
            raise _BadRequest(400, "Bad Content-Length") from err
        if length < 0:
            raise _BadRequest(400, "Bad Content-Length")
        if length > limit:
            raise _BadRequest(413, "Payload Too Large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest(400, "Incomplete body")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as err:
                raise _BadRequest(400, "Bad chunk size") from err
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(parts)
            total += size
            if total > limit:
                raise _BadRequest(413, "Payload Too Large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise _BadRequest(400, "Incomplete chunk")
            parts.append(chunk)
            self.rfile.readline()  # CRLF after the chunk

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class ModelServer:
    """Serves one model on ``/invocations`` in a background thread.

    Counters: ``invocations`` (POSTs to /invocations), ``failures`` (those answered 4xx/5xx),
    ``in_flight_max`` (most invocations in progress at once), ``connections`` (TCP connections accepted).
    """

    def __init__(
        self,
        model: Model,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_remote: bool = False,
        latency_seconds: float = 0.0,
        verbose: bool = False,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to bind non-loopback host {host!r}; pass allow_remote=True (CLI: --allow-remote)"
            )
        if latency_seconds < 0:
            raise ValueError("latency_seconds must be >= 0")
        self.model = model
        self.host = host
        self.requested_port = port
        self.latency_seconds = float(latency_seconds)
        self.verbose = verbose
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._invocations = 0
        self._failures = 0
        self._accepted = 0
        self._in_flight = 0
        self._in_flight_max = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # lifecycle

    def start(self) -> ModelServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None or self._stopped:
            raise RuntimeError("ModelServer can only be started once")
        self._httpd = _HTTPServer((self.host, self.requested_port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"model-server-{self.model.name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.debug("serving %s at %s", self.model.name, self.url)
        return self

    def stop(self) -> None:
        """Stop serving, close open keep-alive connections and the listening socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        self._stopped = True
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes handler threads blocked on keep-alive reads
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> ModelServer:
        return self if self._httpd is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # addresses

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ModelServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/invocations"

    # counters

    @property
    def invocations(self) -> int:
        with self._lock:
            return self._invocations

    @property
    def failures(self) -> int:
        """Invocations answered with 4xx/5xx."""
        with self._lock:
            return self._failures

    @property
    def connections(self) -> int:
        """TCP connections accepted (keep-alive clients reuse one)."""
        with self._lock:
            return self._accepted

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def in_flight_max(self) -> int:
        with self._lock:
            return self._in_flight_max

    def reset_counters(self) -> None:
        with self._lock:
            self._invocations = self._failures = self._accepted = 0
            self._in_flight_max = self._in_flight

    # request handling (called from handler threads)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._accepted += 1
            self._connections.add(conn)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _invoke(self, body: bytes, custom_attributes: str | None) -> tuple[int, bytes, str]:
        with self._lock:
            self._invocations += 1
            self._in_flight += 1
            self._in_flight_max = max(self._in_flight_max, self._in_flight)
        status = 500
        try:
            if self.latency_seconds:
                time.sleep(self.latency_seconds)
            status, payload, content_type = self._run_model(body, custom_attributes)
            return status, payload, content_type
        finally:
            with self._lock:
                self._in_flight -= 1
                if status >= 400:
                    self._failures += 1

    def _run_model(self, body: bytes, custom_attributes: str | None) -> tuple[int, bytes, str]:
        try:
            image = decode_tile(body)
        except TileDecodeError as err:
            log.debug("undecodable payload (%d bytes): %s", len(body), err)
            return 400, PARSE_ERROR, TEXT
        options = parse_custom_attributes(custom_attributes)
        try:
            _mock_latency(options)
            result = self.model(image, options)
            return 200, json.dumps(result).encode(), JSON
        except ModelResponse as answer:  # a fault the model injects on purpose
            return answer.status, answer.body, answer.content_type
        except Exception:
            log.warning("model %s failed on a %s tile", self.model.name, image.shape, exc_info=True)
            return 500, PROCESS_ERROR, TEXT


def _mock_latency(options: dict[str, str]) -> None:
    """``mock_latency_mean`` / ``mock_latency_std`` custom attributes (seconds), as osml's test models take."""
    mean = float(options.get("mock_latency_mean", 0) or 0)
    if mean > 0:
        std = float(options.get("mock_latency_std", 0) or 0)
        time.sleep(max(0.0, random.gauss(mean, std) if std > 0 else mean))
