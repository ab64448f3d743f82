"""The SageMaker-contract HTTP server: routes, errors, custom attributes, counters, keep-alive."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from airflow_provider_osml.models import (
    MODELS,
    CenterpointModel,
    Model,
    ModelServer,
    TileDecodeError,
    create_model,
    decode_tile,
    encode_tile,
    parse_custom_attributes,
    serve_model,
)
from airflow_provider_osml.models.server import CUSTOM_ATTRIBUTES_HEADER, is_loopback

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


class FailingModel:
    name = "failing"

    def __call__(self, image: np.ndarray, options: dict) -> dict:
        raise RuntimeError("boom")


class EchoModel:
    """Returns what it was given, to check decoding and options."""

    name = "echo"

    def __call__(self, image: np.ndarray, options: dict) -> dict:
        return {
            "type": "FeatureCollection",
            "features": [],
            "shape": list(image.shape),
            "dtype": str(image.dtype),
            "sum": int(image.astype(np.int64).sum()),
            "options": dict(options),
        }


def tile(width: int = 64, height: int = 48, bands: int = 1, dtype: str = "uint8") -> np.ndarray:
    values = np.arange(bands * height * width) % 251
    return values.reshape(bands, height, width).astype(dtype)


@pytest.fixture
def centerpoint(start_server) -> ModelServer:
    return start_server(CenterpointModel())


def test_ping(centerpoint, fetch):
    status, headers, body = fetch(centerpoint.base_url + "/ping")
    assert (status, body) == (200, b"\n")
    assert headers["Content-Length"] == "1"


def test_unknown_paths_are_404(centerpoint, fetch):
    assert fetch(centerpoint.base_url + "/nope")[0] == 404
    assert fetch(centerpoint.base_url + "/nope", body=b"x")[0] == 404
    assert fetch(centerpoint.base_url + "/invocations", method="GET")[0] == 405
    assert centerpoint.invocations == 0


@pytest.mark.parametrize("driver", ["GTiff", "PNG", "JPEG", "NITF"])
def test_invocation_decodes_each_format(start_server, fetch, driver):
    server = start_server(EchoModel())
    image = tile(64, 48)
    status, headers, body = fetch(server.url, body=encode_tile(image, driver))
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    result = json.loads(body)
    assert result["shape"] == [1, 48, 64]
    assert result["dtype"] == "uint8"
    if driver != "JPEG":  # lossy
        assert result["sum"] == int(image.astype(np.int64).sum())


def test_centerpoint_over_http(centerpoint, fetch):
    status, _, body = fetch(centerpoint.url, body=encode_tile(tile(512, 512), "GTiff"))
    assert status == 200
    result = json.loads(body)
    assert result["type"] == "FeatureCollection"
    assert result["features"][0]["properties"]["bounds_imcoords"] == [204.8, 204.8, 307.2, 307.2]


@pytest.mark.parametrize("payload", [b"not an image at all", b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20])
def test_garbage_is_400(centerpoint, fetch, payload):
    status, _, body = fetch(centerpoint.url, body=payload)
    assert (status, body) == (400, b"Unable to parse image from request!")
    assert centerpoint.invocations == 1
    assert centerpoint.failures == 1


def test_vrt_payload_is_refused(start_server, fetch):
    # VRT could make GDAL read server-side files: only image drivers are allowed.
    vrt = (
        b'<VRTDataset rasterXSize="1" rasterYSize="1"><VRTRasterBand dataType="Byte" band="1">'
        b"<SimpleSource><SourceFilename>/etc/hostname</SourceFilename></SimpleSource>"
        b"</VRTRasterBand></VRTDataset>"
    )
    server = start_server(EchoModel())
    assert fetch(server.url, body=vrt)[0] == 400
    with pytest.raises(TileDecodeError):
        decode_tile(vrt)


def test_model_exception_is_500(start_server, fetch):
    server = start_server(FailingModel())
    status, _, body = fetch(server.url, body=encode_tile(tile()))
    assert (status, body) == (500, b"Unable to process request.")
    assert server.failures == 1


def test_custom_attributes_reach_the_model(start_server, fetch):
    server = start_server(EchoModel())
    headers = {CUSTOM_ATTRIBUTES_HEADER: "segmentation=true, bbox_percentage=0.2,junk"}
    status, _, body = fetch(server.url, body=encode_tile(tile()), headers=headers)
    assert status == 200
    assert json.loads(body)["options"] == {"segmentation": "true", "bbox_percentage": "0.2"}


def test_custom_attributes_override_centerpoint(centerpoint, fetch):
    headers = {CUSTOM_ATTRIBUTES_HEADER: "segmentation=true,bbox_percentage=0.2"}
    status, _, body = fetch(centerpoint.url, body=encode_tile(tile(100, 100)), headers=headers)
    assert status == 200
    props = json.loads(body)["features"][0]["properties"]
    assert props["imageBBox"] == [30.0, 30.0, 70.0, 70.0]
    assert props["imageGeometry"]["type"] == "Polygon"


def test_parse_custom_attributes():
    assert parse_custom_attributes(None) == {}
    assert parse_custom_attributes("") == {}
    assert parse_custom_attributes("a=1,b = x=y , c,=z") == {"a": "1", "b": "x=y"}


def test_counters_and_concurrency(start_server, fetch):
    server = start_server(CenterpointModel(), latency_seconds=0.3)
    payload = encode_tile(tile())
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def call() -> None:
        barrier.wait()
        statuses.append(fetch(server.url, body=payload)[0])

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 4
    assert server.invocations == 4
    assert 2 <= server.in_flight_max <= 4
    assert server.in_flight == 0
    fetch(server.base_url + "/ping")
    assert server.invocations == 4  # pings are not invocations
    server.reset_counters()
    assert (server.invocations, server.in_flight_max, server.failures) == (0, 0, 0)


def test_keep_alive_reuses_one_connection(centerpoint):
    payload = encode_tile(tile())
    conn = http.client.HTTPConnection("127.0.0.1", centerpoint.port, timeout=10)
    try:
        bodies = []
        for _ in range(2):
            conn.request("POST", "/invocations", body=payload)
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("Connection") is None
            bodies.append(response.read())
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"\n"
        # Error answers keep the connection too, since the body was read.
        conn.request("POST", "/invocations", body=b"garbage")
        assert conn.getresponse().read() == b"Unable to parse image from request!"
    finally:
        conn.close()
    assert bodies[0] == bodies[1]
    assert centerpoint.connections == 1
    assert centerpoint.invocations == 3


def test_chunked_request_body(centerpoint):
    payload = encode_tile(tile(512, 512))
    chunks = (payload[i : i + 10_000] for i in range(0, len(payload), 10_000))
    conn = http.client.HTTPConnection("127.0.0.1", centerpoint.port, timeout=10)
    try:
        conn.request("POST", "/invocations", body=chunks, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 200
        props = json.loads(response.read())["features"][0]["properties"]
    finally:
        conn.close()
    assert props["bounds_imcoords"] == [204.8, 204.8, 307.2, 307.2]


def test_too_large_body_is_413(start_server, fetch):
    server = start_server(CenterpointModel(), max_body_bytes=1000)
    assert fetch(server.url, body=b"x" * 1001)[0] == 413


def test_requests_are_quiet_unless_verbose(start_server, fetch, capfd):
    server = start_server(CenterpointModel())
    fetch(server.base_url + "/ping")
    fetch(server.url, body=b"garbage")
    assert capfd.readouterr().err == ""
    loud = start_server(CenterpointModel(), verbose=True)
    fetch(loud.base_url + "/ping")
    assert "GET /ping" in capfd.readouterr().err


def test_urls_and_lifecycle(fetch):
    server = ModelServer(CenterpointModel())
    with pytest.raises(RuntimeError):
        _ = server.port
    with server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.url == f"http://127.0.0.1:{server.port}/invocations"
        assert fetch(server.base_url + "/ping")[0] == 200
        port = server.port
    server.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
    with pytest.raises(RuntimeError):
        server.start()


def test_stop_closes_idle_keep_alive_connections(centerpoint):
    conn = http.client.HTTPConnection("127.0.0.1", centerpoint.port, timeout=5)
    try:
        conn.request("GET", "/ping")
        conn.getresponse().read()
        centerpoint.stop()
        assert centerpoint.in_flight == 0
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/ping")
            conn.getresponse().read()
    finally:
        conn.close()


def test_non_loopback_host_is_refused():
    with pytest.raises(ValueError, match="allow_remote"):
        ModelServer(CenterpointModel(), host="0.0.0.0")
    with pytest.raises(ValueError):
        ModelServer(CenterpointModel(), host="example.com")
    ModelServer(CenterpointModel(), host="0.0.0.0", allow_remote=True)  # constructed, never bound
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("10.0.0.1")


def test_registry_and_serve_model(fetch):
    assert set(MODELS) == {"centerpoint", "blobs", "flood", "failure", "all"}
    for name in MODELS:
        assert isinstance(create_model(name), Model)
    with pytest.raises(ValueError, match="all, blobs, centerpoint, failure, flood"):
        create_model("aircraft")
    server = serve_model("centerpoint", segmentation=True, latency_seconds=0.01)
    try:
        status, _, body = fetch(server.url, body=encode_tile(tile(512, 512)))
    finally:
        server.stop()
    assert status == 200
    assert json.loads(body)["features"][0]["properties"]["imageBBox"] == [204.8, 204.8, 307.2, 307.2]


def test_decode_tile_multiband_and_16bit():
    rgb = tile(40, 30, bands=3)
    assert np.array_equal(decode_tile(encode_tile(rgb, "PNG")), rgb)
    deep = tile(40, 30, dtype="uint16") * 200
    assert np.array_equal(decode_tile(encode_tile(deep, "NITF")), deep)
    with pytest.raises(TileDecodeError):
        decode_tile(b"")


def test_command_line_serves_until_sigterm(fetch):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_osml.models",
            "centerpoint",
            "serve",  # what SageMaker appends
            "--port",
            "0",
            "--segmentation",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/invocations")
        status, _, body = fetch(url, body=encode_tile(tile(512, 512)))
        assert status == 200
        assert json.loads(body)["features"][0]["geometry"] is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_command_line_rejects_options_of_other_models():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_osml.models",
            "centerpoint",
            "--port",
            "0",
            "--threshold",
            "3",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "threshold" in proc.stderr
