"""The ``osml-airflow`` command, run as a user runs it: a subprocess with its own Airflow home."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.golden import assert_matches_golden

pytestmark = pytest.mark.airflow

GOLDEN_REQUEST = {
    "jobId": "golden-meta",
    "imageProcessorTileSize": 512,
    "imageProcessorTileOverlap": 128,
    "imageProcessorTileFormat": "GTIFF",
    "imageProcessorTileCompression": "NONE",
    "postProcessing": [{"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.75}}],
}


def osml_airflow(*args: str, cwd, roots: list[str] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["OSML_ALLOWED_ROOTS"] = os.pathsep.join(roots)
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_osml.cli", "--home", str(cwd / ".osml"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize(
    ("golden", "segmentation"),
    [pytest.param("golden-v2.1.0", False, id="v2.1.0-legacy-model"), pytest.param("golden-head", True, id="head")],
)
def test_run_reproduces_the_published_meta_ntf_outputs(tmp_path, fixtures_dir, golden, segmentation):
    request = dict(GOLDEN_REQUEST, imageUrls=[str(fixtures_dir / "meta.ntf")],
                   imageProcessor={"name": "placeholder", "type": "SM_ENDPOINT"},
                   outputs=[{"type": "File", "path": "results"}])
    (tmp_path / "request.json").write_text(json.dumps(request))
    args = ["run", "request.json", "--model", "centerpoint"] + (["--segmentation"] if segmentation else [])
    done = osml_airflow(*args, cwd=tmp_path, roots=[str(fixtures_dir)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "status:   SUCCESS" in done.stdout
    result = tmp_path / "results" / "golden-meta.geojson"
    assert f"result:   {result}" in done.stdout
    actual = json.loads(result.read_text())["features"]
    expected = json.loads((fixtures_dir / golden / "centerpoint.meta.ntf.geojson").read_text())["features"]
    assert_matches_golden(expected, actual)


def test_validate_names_the_bad_field(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"jobId": "j", "imageUrls": ["/vsicurl/http://x/y.tif"],
                                                  "imageProcessor": {"name": "m"}}))
    done = osml_airflow("validate", "bad.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "imageUrls[0]" in done.stderr


def test_demo_finds_every_object_once(tmp_path):
    done = osml_airflow("demo", "--dir", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    result = tmp_path / "demo" / "results" / "osml-demo.geojson"
    assert f"result:   {result}" in done.stdout
    features = json.loads(result.read_text())["features"]

    from airflow_provider_osml.demo import make_demo_scene

    scene = make_demo_scene(tmp_path / "again")  # same seed: the same objects
    assert scene.seam_objects > 20
    assert_each_object_found_once(scene.objects, features)
    for feature in features:
        props = feature["properties"]
        assert feature["geometry"]["type"] == "Polygon"
        lon, lat = props["center_longitude"], props["center_latitude"]
        assert 14 < lon < 16 and 47 < lat < 48.5  # UTM 33N scene near 15E 47.8N
        assert len(props["imageBBox"]) == 4 and props["featureClasses"] and "imageGeometry" in props


def assert_each_object_found_once(objects, features) -> None:
    centres = [
        ((f["properties"]["imageBBox"][0] + f["properties"]["imageBBox"][2]) / 2,
         (f["properties"]["imageBBox"][1] + f["properties"]["imageBBox"][3]) / 2)
        for f in features
    ]
    for cx, cy, radius in objects:
        hits = [c for c in centres if abs(c[0] - cx) <= 1.5 and abs(c[1] - cy) <= 1.5]
        assert len(hits) == 1, f"object at ({cx:.1f}, {cy:.1f}) r={radius} found {len(hits)} times"
    assert len(features) == len(objects)
