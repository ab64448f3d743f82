"""The DAG on real imagery: the published meta.ntf outputs and S3 images read with range requests."""

from __future__ import annotations

import json

import pytest

from tests.golden import assert_matches_golden
from tests.test_cli import GOLDEN_REQUEST

pytestmark = pytest.mark.airflow


def run_with_model(dag, request: dict, model: str, **options):
    from airflow_provider_osml.models import serve_model

    server = serve_model(model, **options)
    try:
        request = dict(request, imageProcessor={"name": server.url, "type": "HTTP_ENDPOINT"})
        return dag.test(run_conf=request), server.invocations
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("golden", "segmentation"),
    [pytest.param("golden-v2.1.0", False, id="v2.1.0-legacy-model"), pytest.param("golden-head", True, id="head")],
)
def test_dag_reproduces_the_published_meta_ntf_outputs(airflow_db, model_runner_dag, fixtures_dir, tmp_path,
                                                       allowed_roots, golden, segmentation):
    job_id = f"golden-dag-{golden}"
    request = dict(GOLDEN_REQUEST, jobId=job_id, imageUrls=[str(fixtures_dir / "meta.ntf")],
                   outputs=[{"type": "File", "path": str(tmp_path)}])
    options = {"segmentation": True} if segmentation else {}
    dag_run, invocations = run_with_model(model_runner_dag, request, "centerpoint", **options)
    assert str(dag_run.state) == "success"
    assert invocations == 9  # 3 x 3 full-size tiles of 512 over 1024 px (variable overlap)
    actual = json.loads((tmp_path / f"{job_id}.geojson").read_text())["features"]
    expected = json.loads((fixtures_dir / golden / "centerpoint.meta.ntf.geojson").read_text())["features"]
    assert len(expected) == 9
    assert_matches_golden(expected, actual)
    for feature in actual:
        assert feature["properties"]["sourceMetadata"][0]["location"] == str(fixtures_dir / "meta.ntf")


def test_range_adjustment_feeds_an_8_bit_model_from_an_11_bit_image(airflow_db, model_runner_dag, tmp_path,
                                                                     allowed_roots):
    """An 11-bit scene with rangeAdjustment MINMAX: the 8-bit blobs model (threshold 128) finds every object."""
    import numpy as np
    import rasterio

    from airflow_provider_osml.demo import make_demo_scene
    from tests.test_cli import assert_each_object_found_once
    from tests.test_dag import request_for, states

    scene = make_demo_scene(tmp_path / "scene", width=1024, height=1024)
    with rasterio.open(scene.path) as src:
        profile, pixels = src.profile, src.read()
    profile.update(dtype="uint16")
    with rasterio.open(scene.path, "w", **profile) as dst:
        dst.write(pixels.astype(np.uint16) * 8)  # 80..2000: the model's 128 threshold would see only "bright"
    request = request_for(scene, "http://127.0.0.1:1", [{"type": "File", "path": str(tmp_path / "out")}], "dra-job")
    request["rangeAdjustment"] = "MINMAX"
    dag_run, _ = run_with_model(model_runner_dag, request, "blobs", threshold=scene.threshold)
    assert str(dag_run.state) == "success", states(dag_run)
    features = json.loads((tmp_path / "out" / "dra-job.geojson").read_text())["features"]
    assert_each_object_found_once(scene.objects, features)
