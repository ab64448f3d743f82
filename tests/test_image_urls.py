"""Image URLs users may send: allow-listed http(s) hosts only, nothing GDAL would misuse."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from airflow_provider_osml import imagery
from airflow_provider_osml.request import IMAGE_HOSTS_ENV, InvalidImageRequest, parse_image_request
from tests.local_http import LocalHTTPServer, QuietHandler


def request_with(url: str) -> dict:
    return {"jobId": "j", "imageUrls": [url], "imageProcessor": {"name": "m"}, "outputs": [{"type": "S3", "bucket": "out"}]}


@pytest.fixture
def hosts(monkeypatch):
    monkeypatch.setenv(IMAGE_HOSTS_ENV, "imagery.example.com, tiles.example.org:8443,http://127.0.0.1:8080")


@pytest.mark.parametrize(
    "url",
    [
        "https://imagery.example.com/scenes/a.tif",
        "https://IMAGERY.example.com./scenes/a.tif?versionId=3",
        "https://tiles.example.org:8443/b.ntf",
        "http://127.0.0.1:8080/c.tif",
    ],
)
def test_allow_listed_hosts_are_accepted(hosts, url):
    assert parse_image_request(request_with(url), allowed_roots=[]).image_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        pytest.param("https://evil.example.net/a.tif", "not allowed: add 'evil.example.net'", id="not-listed"),
        pytest.param("https://tiles.example.org/b.ntf", "'tiles.example.org' are not allowed", id="wrong-port"),
        pytest.param("http://imagery.example.com/a.tif", "add 'http://imagery.example.com'", id="http-needs-opt-in"),
        pytest.param("https://169.254.169.254/latest/meta-data", "metadata address", id="link-local"),
        pytest.param("https://[fe80::1]/a.tif", "metadata address", id="link-local-v6"),
        pytest.param("https://2852039166/a.tif", "metadata address", id="link-local-decimal"),
        pytest.param("https://metadata.google.internal/a.tif", "metadata address", id="gcp-metadata"),
        pytest.param("https://user:secret@imagery.example.com/a.tif", "credentials", id="credentials"),
        pytest.param("https:///a.tif", "need a host", id="no-host"),
        pytest.param("/vsicurl/https://imagery.example.com/a.tif", "/vsi", id="vsicurl"),
        pytest.param("https://imagery.example.com/vsizip/a.zip", "/vsi", id="vsi-segment-in-url"),
        pytest.param("file:///etc/passwd", "outside the allowed roots", id="file-outside-roots"),
        pytest.param("/etc/passwd", "outside the allowed roots", id="path-outside-roots"),
        pytest.param("ftp://imagery.example.com/a.tif", "not supported", id="ftp"),
    ],
)
def test_rejected_image_urls_name_the_field(hosts, tmp_path, url, reason):
    with pytest.raises(InvalidImageRequest, match=re.escape(reason)) as raised:
        parse_image_request(request_with(url), allowed_roots=[str(tmp_path)])
    assert raised.value.field == "imageUrls[0]"


def test_without_an_allow_list_no_web_image_is_accepted(monkeypatch):
    monkeypatch.delenv(IMAGE_HOSTS_ENV, raising=False)
    with pytest.raises(InvalidImageRequest, match=IMAGE_HOSTS_ENV):
        parse_image_request(request_with("https://imagery.example.com/a.tif"), allowed_roots=[])


def test_a_host_name_resolving_to_a_metadata_address_is_refused_at_open(monkeypatch):
    import socket

    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 0))] if host == "rebind.test" else real(host, *a, **k)
    ))
    with pytest.raises(imagery.InvalidImage, match="resolves to a link-local"), imagery.open_image(
        "https://rebind.test/a.tif"
    ):
        pass


class RangeFileServer(LocalHTTPServer):
    """Serves one directory over plain HTTP with Range support, as object stores do; records ranges."""

    def __init__(self, directory) -> None:
        ranges = self.ranges = []

        class Handler(QuietHandler):
            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                path = os.path.join(directory, os.path.basename(self.path))
                if not os.path.isfile(path):
                    self.send_error(404)
                    return
                data = open(path, "rb").read()
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if match:
                    start, end = int(match.group(1)), int(match.group(2) or len(data) - 1)
                    chunk = data[start : end + 1]
                    ranges.append(len(chunk))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{start + len(chunk) - 1}/{len(data)}")
                else:
                    chunk = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(chunk)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if body:
                    self.wfile.write(chunk)

        super().__init__(Handler)


def test_an_allow_listed_web_image_is_read_by_ranges(tmp_path, monkeypatch):
    from airflow_provider_osml.demo import make_demo_scene

    scene = make_demo_scene(tmp_path, width=1024, height=1024)
    with RangeFileServer(tmp_path) as server:
        monkeypatch.setenv(IMAGE_HOSTS_ENV, f"http://127.0.0.1:{server.port}")
        url = parse_image_request(request_with(f"http://127.0.0.1:{server.port}/scene.tif"), allowed_roots=[]).image_url
        with imagery.open_image(url) as dataset:
            pixels = imagery.read_window(dataset, 300, 300, 100, 100)
    with rasterio.open(scene.path) as local:
        np.testing.assert_array_equal(pixels, local.read(window=Window(300, 300, 100, 100)))
    assert server.ranges and sum(server.ranges) < 0.25 * os.path.getsize(scene.path)
