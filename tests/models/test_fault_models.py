"""flood and failure reference models, the all-in-one selector and per-request mock latency, over real HTTP."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airflow_provider_osml.models import FailureModel, FloodModel, create_model, encode_tile
from airflow_provider_osml.models.__main__ import build_parser, model_options
from airflow_provider_osml.models.server import CUSTOM_ATTRIBUTES_HEADER

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def tile(value: int = 7, size: int = 64, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 200, (1, size, size), dtype=np.uint8)
    pixels[0, 0, 0] = value
    return pixels


def test_flood_is_seeded_by_tile_content_and_matches_the_reference_shape():
    model = FloodModel(flood_volume=50, bbox_percentage=0.1)
    first, again = model(tile(seed=1), {}), model(tile(seed=1), {})
    other = model(tile(seed=2), {})
    assert first == again and first != other
    assert len(first["features"]) == 50
    assert len(model(tile(seed=1), {"flood_volume": "5"})["features"]) == 5
    for feature in first["features"]:
        minx, miny, maxx, maxy = feature["properties"]["bounds_imcoords"]
        assert 0 <= minx < maxx <= 64 and 0 <= miny < maxy <= 64
        assert maxx - minx <= 2 * 7 + 1e-9  # half-size ceil(0.1 * 64) = 7
        props = feature["properties"]
        assert props["detection_score"] == props["feature_types"]["sample_object"]
    assert len({f["id"] for f in first["features"]}) == 50


@pytest.mark.parametrize(
    ("kind", "status", "check"),
    [
        ("error", 500, lambda body: body == b"Unable to process request."),
        ("throttle", 429, lambda body: True),
        ("garbage", 200, lambda body: not _is_json(body)),
        ("not_geojson", 200, lambda body: "features" not in json.loads(body)),
        ("no_geometry", 200, lambda body: json.loads(body)["features"][0]["properties"] == {"score": 1.0}),
        ("nan", 200, lambda body: b"NaN" in body),
    ],
)
def test_failure_model_fails_marked_tiles_in_the_chosen_way(start_server, fetch, kind, status, check):
    server = start_server(FailureModel(kind=kind, marker=255))
    code, _, body = fetch(server.url, body=encode_tile(tile(value=255)))
    assert code == status and check(body)
    code, _, body = fetch(server.url, body=encode_tile(tile(value=3)))
    assert code == 200 and json.loads(body)["features"][0]["properties"]["imageBBox"]  # centerpoint answer


def test_failure_model_every_nth_call_is_transient(start_server, fetch):
    server = start_server(FailureModel(every=5))
    codes = [fetch(server.url, body=encode_tile(tile(seed=i)))[0] for i in range(10)]
    assert codes == [200, 200, 200, 200, 500] * 2
    assert server.failures == 2 and server.invocations == 10


def test_failure_model_fail_fraction_is_stable_per_tile():
    model = FailureModel(fail_fraction=0.3)
    tiles = [tile(seed=i) for i in range(200)]
    failing = [model.should_fail(t, {}, 1) for t in tiles]
    assert failing == [model.should_fail(t, {}, 2) for t in tiles]
    assert 0.2 < sum(failing) / len(tiles) < 0.4


def test_slow_answers_and_mock_latency(start_server, fetch):
    server = start_server(FailureModel(kind="slow", marker=255, hang_seconds=0.2))
    code, _, body = fetch(server.url, body=encode_tile(tile(value=255)))
    assert code == 200 and json.loads(body)["features"]
    latency = start_server(create_model("centerpoint"))
    code, _, _ = fetch(latency.url, body=encode_tile(tile()), headers={CUSTOM_ATTRIBUTES_HEADER: "mock_latency_mean=0.05"})
    assert code == 200 and latency.invocations == 1


def test_all_in_one_server_selects_the_model_per_request(start_server, fetch):
    server = start_server(create_model("all"))
    payload = encode_tile(tile())
    _, _, body = fetch(server.url, body=payload, headers={CUSTOM_ATTRIBUTES_HEADER: "model_selection=flood,flood_volume=3"})
    assert len(json.loads(body)["features"]) == 3
    _, _, body = fetch(server.url, body=payload)
    assert len(json.loads(body)["features"]) == 1  # centerpoint by default
    code, _, _ = fetch(server.url, body=payload, headers={CUSTOM_ATTRIBUTES_HEADER: "model_selection=aircraft"})
    assert code == 500


def test_cli_options_for_the_new_models():
    parser = build_parser()
    args = parser.parse_args(["failure", "--kind", "garbage", "--marker", "255", "--latency", "0.1"])
    assert model_options(args) == {"kind": "garbage", "marker": 255.0} and args.latency == 0.1
    assert model_options(parser.parse_args(["flood", "--flood-volume", "50"])) == {"flood_volume": 50}
    with pytest.raises(ValueError, match="not used by flood"):
        model_options(parser.parse_args(["flood", "--kind", "error"]))
    with pytest.raises(ValueError, match="kind must be one of"):
        FailureModel(kind="explode")


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def test_the_model_container_serves_every_model_per_the_sagemaker_contract(fetch):
    """``docker run image serve`` as SageMaker starts it (host forced back to loopback for the test)."""
    import os
    import re
    import subprocess
    import sys

    from airflow_provider_osml.models.__main__ import sagemaker_argv
    from tests.conftest import REPO, free_port

    dockerfile = (REPO / "docker" / "Dockerfile.model").read_text()
    assert re.search(r'^ENTRYPOINT \["python", "-m", "airflow_provider_osml.models"\]$', dockerfile, re.M)
    assert re.search(r'^CMD \["serve"\]$', dockerfile, re.M)
    assert sagemaker_argv(["serve"])[:4] == ["all", "--host", "0.0.0.0", "--allow-remote"]
    assert sagemaker_argv(["flood", "--port", "1"]) == ["flood", "--port", "1"]

    port = free_port()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "airflow_provider_osml.models", "serve", "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}/invocations"
        assert fetch(f"http://127.0.0.1:{port}/ping")[0] == 200
        payload = encode_tile(tile())
        for selection, count in (("flood,flood_volume=4", 4), ("centerpoint", 1)):
            _, _, body = fetch(url, body=payload, headers={CUSTOM_ATTRIBUTES_HEADER: f"model_selection={selection}"})
            assert len(json.loads(body)["features"]) == count
        code, _, _ = fetch(url, body=payload, headers={CUSTOM_ATTRIBUTES_HEADER: "model_selection=failure,marker=7"})
        assert code == 500
    finally:
        proc.terminate()
        proc.wait(timeout=10)
