"""``s3://`` images through GDAL range reads on moto server, with ``imageReadRole`` assumed."""

from __future__ import annotations

import json
import os

import boto3
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from airflow_provider_osml import imagery
from tests.counting_proxy import CountingProxy

READ_ROLE = "arn:aws:iam::123456789012:role/image-reader"


@pytest.fixture
def s3_proxy(moto_server, monkeypatch):
    """moto behind a counting proxy; the aws_default connection (S3 and STS) goes through the proxy.

    The amazon provider never sends AssumeRole to the global ``endpoint_url``: STS needs its own
    ``service_config`` entry (docs/imagery.md).
    """
    with CountingProxy(moto_server) as proxy:
        extra = {"endpoint_url": proxy.url, "region_name": "us-east-1",
                 "service_config": {"sts": {"endpoint_url": proxy.url}}}
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
        )
        yield proxy


@pytest.fixture
def scene(tmp_path):
    from airflow_provider_osml.demo import make_demo_scene

    return make_demo_scene(tmp_path / "scene", width=1400, height=1100)  # tiled 256x256, uncompressed


def upload(scene, moto_server, key: str) -> tuple[str, int]:
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="imagery")
    s3.upload_file(str(scene.path), "imagery", key)
    return f"s3://imagery/{key}", os.path.getsize(scene.path)


def test_a_window_is_read_with_a_few_small_ranges_as_the_read_role(airflow_db, s3_proxy, moto_server, scene):
    from airflow_provider_osml.operators.context import s3_access
    from airflow_provider_osml.operators.settings import load_settings

    url, size = upload(scene, moto_server, "scenes/window-read.tif")
    access = s3_access(load_settings(), READ_ROLE)
    with imagery.open_image(url, s3=access) as dataset:
        assert (dataset.width, dataset.height) == (1400, 1100)
        assert dataset.block_shapes[0] == (256, 256)
        pixels = imagery.read_window(dataset, 600, 300, 200, 200)
    with rasterio.open(scene.path) as local:
        np.testing.assert_array_equal(pixels, local.read(window=Window(600, 300, 200, 200)))

    gets = s3_proxy.gets("scenes/window-read.tif")
    served = sum(r.body_bytes for r in gets)
    assert gets and all(r.range and r.status == 206 for r in gets), gets
    # a 200 px window touches 4 internal tiles of 196 kB: far less than the 5.9 MB file
    assert served < 0.25 * size, (served, size)
    # the role's temporary credentials (moto STS hands out ASIA... keys) signed open and read alike
    assert {r.access_key for r in gets} != {"testing"}
    assert all(r.access_key and r.access_key.startswith("ASIA") for r in gets), {r.access_key for r in gets}
    assert any(r.method == "POST" and r.path == "/" for r in s3_proxy.requests)  # the STS AssumeRole call


@pytest.mark.airflow
def test_the_dag_processes_an_s3_image_end_to_end(model_runner_dag, s3_proxy, moto_server, scene, tmp_path,
                                                  allowed_roots):
    from airflow_provider_osml.models import serve_model
    from tests.test_cli import assert_each_object_found_once
    from tests.test_dag import request_for, states, status_record

    url, size = upload(scene, moto_server, "scenes/dag-run.tif")
    dag = model_runner_dag
    server = serve_model("blobs", threshold=scene.threshold)
    try:
        request = request_for(scene, server.url, [{"type": "File", "path": str(tmp_path / "out")}], "s3-image-job")
        request.update(imageUrls=[url], imageReadRole=READ_ROLE)
        dag_run = dag.test(run_conf=request)
    finally:
        server.stop()
    assert str(dag_run.state) == "success", states(dag_run)
    assert status_record("s3-image-job")["status"] == "SUCCESS"
    features = json.loads((tmp_path / "out" / "s3-image-job.geojson").read_text())["features"]
    assert_each_object_found_once(scene.objects, features)
    gets = s3_proxy.gets("scenes/dag-run.tif")
    assert gets and all(r.range and r.access_key.startswith("ASIA") for r in gets)
