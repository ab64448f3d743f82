"""The osml_model_runner DAG through Airflow itself (``dag.test()`` on SQLite) against real model servers."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from tests.test_cli import assert_each_object_found_once

pytestmark = pytest.mark.airflow


def test_dag_has_the_designed_task_graph(model_runner_dag):
    tasks = {t.task_id: t for t in model_runner_dag.tasks}
    assert set(tasks) == {
        "validate_request", "plan_regions", "infer_region", "geolocate_region",
        "select_features", "write_sink", "report_status",
    }
    assert tasks["report_status"].trigger_rule == "all_done"
    assert tasks["infer_region"].upstream_task_ids == {"validate_request", "plan_regions"}
    assert "geolocate_region" in tasks["select_features"].upstream_task_ids
    # the request's JSON Schema drives the trigger form
    assert {"jobId", "imageUrls", "imageProcessor", "outputs"} <= set(model_runner_dag.params)


@pytest.fixture
def scene(tmp_path):
    from airflow_provider_osml.demo import make_demo_scene

    return make_demo_scene(tmp_path / "scene", width=1400, height=1100)


def request_for(scene, url: str, outputs: list[dict], job_id: str) -> dict:
    return scene.request(url, outputs, job_id)


def status_record(job_id: str) -> dict:
    import os

    work = os.environ["AIRFLOW__OSML__WORK_STORE"].removeprefix("file://")
    return json.loads((Path(work) / job_id / "status.json").read_text())


def states(dag_run) -> dict[str, str]:
    return {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}


def test_end_to_end_file_and_s3_sinks(airflow_db, model_runner_dag, scene, tmp_path, allowed_roots, moto_server):
    from airflow_provider_osml.models import serve_model

    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    outputs = [{"type": "File", "path": str(tmp_path / "out")}, {"type": "S3", "bucket": "results", "prefix": "jobs"}]
    server = serve_model("blobs", threshold=scene.threshold)
    try:
        dag_run = model_runner_dag.test(run_conf=request_for(scene, server.url, outputs, "e2e-job"))
    finally:
        server.stop()
    assert str(dag_run.state) == "success", states(dag_run)
    record = status_record("e2e-job")
    assert record["status"] == "SUCCESS"
    assert record["counts"]["regions"] > 1 and record["counts"]["failedTiles"] == 0
    assert server.invocations == record["counts"]["tiles"]
    features = json.loads((tmp_path / "out" / "e2e-job.geojson").read_text())["features"]
    assert_each_object_found_once(scene.objects, features)
    body = s3.get_object(Bucket="results", Key="jobs/e2e-job.geojson")["Body"].read()
    assert json.loads(body)["features"] == features


class FailOnSomeTiles:
    """A real model that answers 500 for tiles whose first pixel is a multiple of 3 (stable across retries)."""

    name = "flaky"

    def __init__(self, threshold: float) -> None:
        from airflow_provider_osml.models import create_model

        self.blobs = create_model("blobs", threshold=threshold)

    def __call__(self, image, options):
        if int(image[0, 0, 0]) % 3 == 0:
            raise RuntimeError("injected failure")
        return self.blobs(image, options)


def test_failed_tiles_are_named_and_the_image_is_partial(airflow_db, model_runner_dag, scene, tmp_path,
                                                         allowed_roots, monkeypatch):
    from airflow_provider_osml.models.server import ModelServer

    monkeypatch.setenv("AIRFLOW__OSML__MODEL_RETRIES", "1")
    monkeypatch.setenv("AIRFLOW__OSML__TILE_RETRY_DELAY", "0.01")
    outputs = [{"type": "File", "path": str(tmp_path / "out")}]
    with ModelServer(FailOnSomeTiles(scene.threshold)) as server:
        dag_run = model_runner_dag.test(run_conf=request_for(scene, server.url, outputs, "partial-job"))
    assert str(dag_run.state) == "success", states(dag_run)
    record = status_record("partial-job")
    assert record["status"] == "PARTIAL"
    assert 0 < len(record["failedTiles"]) < record["counts"]["tiles"]
    assert all("500" in t["error"] and len(t["window"]) == 4 for t in record["failedTiles"])
    assert (tmp_path / "out" / "partial-job.geojson").exists()


def test_invalid_request_fails_before_any_model_call(airflow_db, model_runner_dag, scene, tmp_path, allowed_roots):
    from airflow_provider_osml.models import serve_model

    server = serve_model("blobs")
    try:
        request = request_for(scene, server.url, [{"type": "File", "path": str(tmp_path)}], "bad-job")
        request["imageProcessorTileOverlap"] = 512
        dag_run = model_runner_dag.test(run_conf=request)
    finally:
        server.stop()
    assert str(dag_run.state) == "failed"
    assert states(dag_run)[("validate_request", -1)] == "failed"
    assert server.invocations == 0
