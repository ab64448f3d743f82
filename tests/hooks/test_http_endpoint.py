"""HttpEndpointHook against real local servers: retries, timeouts, TLS, response limit, endpoint allow-list."""

from __future__ import annotations

import datetime
import ipaddress
import socket

import numpy as np
import pytest

from airflow_provider_osml.hooks import http_endpoint
from airflow_provider_osml.hooks.http_endpoint import (
    EndpointNotAllowed,
    HttpEndpointHook,
    ModelInvocationError,
    check_endpoint_url,
)
from airflow_provider_osml.models import FailureModel, ModelServer, create_model, encode_tile
from tests.local_http import LocalHTTPServer, QuietHandler

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

PAYLOAD = encode_tile(np.arange(64 * 64, dtype=np.uint8).reshape(1, 64, 64))


def hook_for(url: str, **kwargs) -> HttpEndpointHook:
    kwargs.setdefault("backoff_factor", 0.01)
    return HttpEndpointHook(endpoint_url=url, **kwargs)


def test_transient_500_and_429_are_retried():
    for kind in ("error", "throttle"):
        with ModelServer(FailureModel(kind=kind, every=2)) as server:
            hook = hook_for(server.url, retries=3)
            answers = [hook.invoke(PAYLOAD) for _ in range(3)]
        assert all(a["features"] for a in answers)
        # calls 1, 2 (fails), 3 (its retry), 4 (fails), 5 (its retry)
        assert server.invocations == 5 and server.failures == 2


def test_the_hook_counts_calls_retries_and_throttles():
    with ModelServer(FailureModel(kind="throttle", every=2)) as server:
        hook = hook_for(server.url, retries=3)
        for _ in range(3):
            hook.invoke(PAYLOAD)
    # 3 calls; the 2nd and the 3rd call's first requests were answered 429 and retried once each
    assert hook.counts.as_dict() == {"calls": 3, "retries": 2, "throttles": 2, "errors": 0}
    assert server.invocations == 3 + 2
    with ModelServer(FailureModel(kind="error", every=1)) as server:
        hook = hook_for(server.url, retries=2)
        with pytest.raises(ModelInvocationError):
            hook.invoke(PAYLOAD)
    assert hook.counts.as_dict() == {"calls": 1, "retries": 2, "throttles": 0, "errors": 1}


def test_persistent_500_fails_after_the_retries_with_the_status():
    with ModelServer(FailureModel(kind="error", every=1)) as server:
        with pytest.raises(ModelInvocationError, match="500"):
            hook_for(server.url, retries=2).invoke(PAYLOAD)
    assert server.invocations == 3


def test_read_timeout_bounds_a_slow_model():
    with ModelServer(create_model("centerpoint"), latency_seconds=0.8) as server:
        with pytest.raises(ModelInvocationError, match="(?i)timed? ?out"):
            hook_for(server.url, retries=0, read_timeout=0.2).invoke(PAYLOAD)
        answer = hook_for(server.url, retries=0, read_timeout=5).invoke(PAYLOAD)
    assert answer["features"]


def test_answers_that_are_not_json_or_too_large_are_errors(monkeypatch):
    with ModelServer(FailureModel(kind="garbage", every=1)) as server:
        with pytest.raises(ModelInvocationError, match="not JSON"):
            hook_for(server.url).invoke(PAYLOAD)
    monkeypatch.setattr(http_endpoint, "MAX_RESPONSE_BYTES", 2000)
    with ModelServer(create_model("flood", flood_volume=100)) as server:
        with pytest.raises(ModelInvocationError, match="exceeds 2000 bytes"):
            hook_for(server.url).invoke(PAYLOAD)


# --- TLS --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (the CA bundle is the certificate itself)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "osml-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
def https_model(self_signed):
    """A real HTTPS endpoint on 127.0.0.1 answering an empty FeatureCollection."""
    cert, key = self_signed

    class Handler(QuietHandler):
        def do_POST(self):
            self.read_body()
            self.answer(200, b'{"type": "FeatureCollection", "features": []}')

    with LocalHTTPServer(Handler, tls=(cert, key)) as server:
        yield f"{server.url}/invocations"


def test_tls_is_verified_by_default(https_model, self_signed):
    with pytest.raises(ModelInvocationError, match="(?i)certificate"):
        hook_for(https_model, retries=0).invoke(PAYLOAD)
    assert hook_for(https_model, verify=str(self_signed[0])).invoke(PAYLOAD)["features"] == []
    assert hook_for(https_model, verify=False).invoke(PAYLOAD)["features"] == []


def test_settings_map_to_tls_verification(monkeypatch, self_signed):
    from airflow_provider_osml.operators.settings import load_settings

    assert load_settings().tls_verify is True
    monkeypatch.setenv("AIRFLOW__OSML__MODEL_CA_BUNDLE", str(self_signed[0]))
    assert load_settings().tls_verify == str(self_signed[0])
    monkeypatch.delenv("AIRFLOW__OSML__MODEL_CA_BUNDLE")
    monkeypatch.setenv("AIRFLOW__OSML__VERIFY_TLS", "false")
    assert load_settings().tls_verify is False


# --- allow-list -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.10.1:8080/invocations",
        "http://[fe80::1]/invocations",
        "http://[::ffff:169.254.169.254]/invocations",
        "http://[fd00:ec2::254]/invocations",
        "http://2852039166/invocations",  # 169.254.169.254 as one integer
        "http://0xa9fea9fe/invocations",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://100.100.100.200/",
    ],
)
def test_link_local_and_metadata_endpoints_are_refused(url):
    with pytest.raises(EndpointNotAllowed, match="link-local or cloud metadata"):
        HttpEndpointHook(endpoint_url=url)


def test_names_resolving_to_metadata_addresses_are_refused(monkeypatch):
    # DNS cannot be controlled here: only the resolver answer is simulated
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
    )
    with pytest.raises(EndpointNotAllowed, match="resolves to 169.254.169.254"):
        check_endpoint_url("http://innocent.example.com/invocations")


def test_allowed_hosts_and_the_explicit_opt_out():
    check_endpoint_url("http://127.0.0.1:8080/invocations", allowed_hosts=["127.0.0.1"])
    with pytest.raises(EndpointNotAllowed, match="not in the allowed hosts"):
        check_endpoint_url("http://10.0.0.5/invocations", allowed_hosts=["127.0.0.1", "models.internal"])
    with pytest.raises(EndpointNotAllowed, match="http"):
        check_endpoint_url("file:///etc/passwd")
    check_endpoint_url("http://169.254.169.254/", allow_link_local=True)


def test_infer_region_refuses_a_disallowed_endpoint_from_settings(monkeypatch, tmp_path):
    from airflow_provider_osml.operators.inference import create_endpoint_client
    from airflow_provider_osml.operators.settings import load_settings
    from airflow_provider_osml.request import parse_image_request

    monkeypatch.setenv("AIRFLOW__OSML__MODEL_ALLOWED_HOSTS", "models.internal")
    request = parse_image_request(
        {"jobId": "j", "imageUrls": ["s3://bucket/image.tif"], "outputs": [{"type": "S3", "bucket": "out"}],
         "imageProcessor": {"name": "http://127.0.0.1:9/invocations", "type": "HTTP_ENDPOINT"}}
    )

    class Ctx:
        settings = load_settings()

    Ctx.request = request
    with pytest.raises(EndpointNotAllowed, match="models.internal"):
        create_endpoint_client(Ctx)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("garbage", "model answer is not JSON"),
        ("not_geojson", "not a GeoJSON FeatureCollection"),
        ("no_geometry", "has no image geometry"),
        ("nan", "NaN or infinite coordinates"),
        ("error", "HTTP 500"),
    ],
)
def test_malformed_answers_fail_the_tile_after_its_attempts_with_the_reason(kind, reason):
    from airflow_provider_osml.operators.inference import call_model

    with ModelServer(FailureModel(kind=kind, every=1)) as server:
        hook = hook_for(server.url, retries=0)
        with pytest.raises(Exception, match=reason):
            call_model(hook.invoke, PAYLOAD, attempts=2, delay=0.0)
    assert server.invocations == 2  # the tile was tried again before it was given up
