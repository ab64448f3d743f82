"""Fixtures for the reference model servers: real servers on 127.0.0.1, always stopped."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_osml.models import ModelServer

REFERENCE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "osml-reference"

Response = tuple[int, dict[str, str], bytes]


@pytest.fixture
def start_server() -> Iterator[Callable[..., ModelServer]]:
    """Factory: ``start_server(model, **kwargs)`` returns a started server, stopped at teardown."""
    servers: list[ModelServer] = []

    def start(model: Any, **kwargs: Any) -> ModelServer:
        server = ModelServer(model, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


def http_request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> Response:
    """One HTTP request; returns (status, headers, body) for any status."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


@pytest.fixture
def fetch() -> Callable[..., Response]:
    return http_request


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"osml reference fixtures not found at {REFERENCE_DIR}")
    return REFERENCE_DIR
