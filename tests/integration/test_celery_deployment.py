"""The osml_model_runner DAG on a real CeleryExecutor deployment (PostgreSQL, Redis, 2 workers, REST API).

One deployment serves the module: worker ``w0`` serves the ``default`` and ``osml-inference`` queues, worker
``w1`` only ``osml-inference`` (a dedicated inference worker), and ``infer_region`` is routed to
``osml-inference`` by ``AIRFLOW__OSML__INFERENCE_QUEUE``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest
import requests

from tests.conftest import REPO, free_port
from tests.integration.harness import AirflowDeployment
from tests.test_cli import assert_each_object_found_once

DAG_ID = "osml_model_runner"
INFERENCE_QUEUE = "osml-inference"
BUCKET = "osml-it-results"
LATENCY = 2.0  # seconds per tile in the worker-kill test, so region tasks run for several seconds



@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("celery-it").resolve()


@pytest.fixture(scope="module")
def moto(base):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    connection = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                             "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})
    try:
        yield endpoint, connection
    finally:
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)  # moto's state is per process: leave none
        server.stop()


@pytest.fixture(scope="module")
def scene(base):
    from airflow_provider_osml.demo import make_demo_scene

    return make_demo_scene(base / "scene", width=1400, height=1100)


@pytest.fixture(scope="module")
def deployment(celery_services, base, moto):
    _, connection = moto
    env = {
        "AIRFLOW__OSML__WORK_STORE": f"file://{base}/work",
        "AIRFLOW__OSML__ALLOWED_ROOTS": str(base),
        "AIRFLOW__OSML__INFERENCE_QUEUE": INFERENCE_QUEUE,
        "AIRFLOW_CONN_AWS_DEFAULT": connection,
    }
    with AirflowDeployment(workers=2, worker_concurrency=2, worker_queues=[f"default,{INFERENCE_QUEUE}",
                                                                           INFERENCE_QUEUE],
                           env=env, run_dir=base / "airflow") as airflow:
        yield airflow


def request_for(scene, model_url: str, job_id: str, out: Path) -> dict:
    outputs = [{"type": "File", "path": str(out)}, {"type": "S3", "bucket": BUCKET, "prefix": job_id}]
    return scene.request(model_url, outputs, job_id)


def comparable(features: list[dict]) -> list[dict]:
    """Features without what legitimately differs between two runs (job id, inference time), in a stable order."""
    result = []
    for feature in features:
        feature = json.loads(json.dumps(feature))
        feature["properties"].pop("inferenceMetadata")
        result.append(feature)
    return sorted(result, key=lambda f: json.dumps(f["properties"]["imageBBox"]))


@pytest.fixture(scope="module")
def reference(airflow_db, scene, base, moto):
    """The same request through ``dag.test()`` in this process (SQLite, no Celery): the features to match."""
    from airflow.dag_processing.dagbag import DagBag

    from airflow_provider_osml.models import serve_model

    endpoint, connection = moto
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW__OSML__ALLOWED_ROOTS", str(base))
    patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection)
    server = serve_model("blobs", threshold=scene.threshold)
    try:
        dag = DagBag(dag_folder=str(REPO / "dags")).get_dag(DAG_ID)
        run = dag.test(run_conf=request_for(scene, server.url, "reference", base / "reference-out"))
    finally:
        server.stop()
        patch.undo()
    assert str(run.state) == "success"
    features = json.loads((base / "reference-out" / "reference.geojson").read_text())["features"]
    assert_each_object_found_once(scene.objects, features)
    return comparable(features)


def results(job_id: str, base: Path, endpoint: str) -> tuple[dict, list[dict]]:
    """The status record from the shared work store, and the features, checked equal in both sinks."""
    status = json.loads((base / "work" / job_id / "status.json").read_text())
    features = json.loads((base / f"{job_id}-out" / f"{job_id}.geojson").read_text())["features"]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    body = s3.get_object(Bucket=BUCKET, Key=f"{job_id}/{job_id}.geojson")["Body"].read()
    assert json.loads(body)["features"] == features
    assert all(f["properties"]["inferenceMetadata"]["jobId"] == job_id for f in features)
    return status, features


def test_request_through_the_rest_api_matches_dag_test(deployment, scene, base, moto, reference):
    from airflow_provider_osml.models import serve_model

    endpoint, _ = moto
    with serve_model("blobs", threshold=scene.threshold) as server:
        run_id = deployment.trigger(DAG_ID, request_for(scene, server.url, "celery-job", base / "celery-job-out"))
        state = deployment.wait(DAG_ID, run_id, timeout=240)
    tis = deployment.task_instances(DAG_ID, run_id)
    assert state == "success", [(t["task_id"], t["map_index"], t["state"]) for t in tis]
    status, features = results("celery-job", base, endpoint)
    assert status["status"] == "SUCCESS" and status["counts"]["failedTiles"] == 0
    assert server.invocations == status["counts"]["tiles"]  # every tile exactly once
    assert comparable(features) == reference

    # queue routing: inference on its queue, everything else on default, which only w0 serves
    infer = [t for t in tis if t["task_id"] == "infer_region"]
    others = [t for t in tis if t["task_id"] != "infer_region"]
    assert len(infer) == status["counts"]["regions"] > 1
    assert {t["queue"] for t in infer} == {INFERENCE_QUEUE}
    assert {t["queue"] for t in others} == {"default"}
    assert {t["hostname"] for t in others} == {"w0"}
    assert {t["hostname"] for t in infer} <= {"w0", "w1"}


def test_killed_worker_loses_nothing_and_duplicates_nothing(deployment, scene, base, moto, reference):
    """``kill -9`` the inference worker while it runs region tasks: Airflow retries them on the other worker."""
    from airflow_provider_osml.models import serve_model

    endpoint, _ = moto
    with serve_model("blobs", threshold=scene.threshold, latency_seconds=LATENCY) as server:
        run_id = deployment.trigger(DAG_ID, request_for(scene, server.url, "kill-job", base / "kill-job-out"))
        killed = wait_for_tiles_in_flight_from(deployment, run_id, 1, server, timeout=120)
        deployment.kill_worker(1)
        state = deployment.wait(DAG_ID, run_id, timeout=300)
    tis = {(t["task_id"], t["map_index"]): t for t in deployment.task_instances(DAG_ID, run_id)}
    assert state == "success", {k: t["state"] for k, t in tis.items()}
    for map_index in killed:
        retried = tis[("infer_region", map_index)]
        assert retried["state"] == "success" and retried["try_number"] >= 2 and retried["hostname"] == "w0"
        first = deployment.tries(DAG_ID, run_id, "infer_region", map_index)[0]
        assert first["hostname"] == "w1" and first["state"] != "success"
    status, features = results("kill-job", base, endpoint)
    assert status["status"] == "SUCCESS" and status["counts"]["failedTiles"] == 0
    # Each tile was asked at least once; a killed try that had already stored its region result is reused by
    # the retry (issue 4's resume), so more calls than tiles are likely but not guaranteed.
    assert server.invocations >= status["counts"]["tiles"]
    assert comparable(features) == reference  # no duplicates, nothing missing
    assert_each_object_found_once(scene.objects, features)


def wait_for_tiles_in_flight_from(deployment: AirflowDeployment, run_id: str, worker: int, server,
                                  timeout: float) -> list[int]:
    """Once worker ``worker`` has model requests in flight: the map indexes of its running infer_region tasks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.in_flight and deployment.worker_connections(worker, server.port):
            running = [t["map_index"] for t in deployment.task_instances(DAG_ID, run_id, "infer_region")
                       if t["state"] == "running" and t["hostname"] == f"w{worker}"]
            if running:
                return running
        time.sleep(0.1)
    raise TimeoutError(f"no model request from worker {worker} within {timeout} s; logs in {deployment.logs}")


def test_pools_are_created_and_resized_through_the_rest_api(deployment):
    deployment.set_pool("osml-harness-test", 3, "made by the harness")
    deployment.set_pool("osml-harness-test", 5)
    pool = deployment.api("GET", "pools/osml-harness-test")
    assert (pool["name"], pool["slots"]) == ("osml-harness-test", 5)


def test_stop_kills_everything_drops_the_database_and_frees_the_broker(deployment):
    """Runs last in this module: stop() (idempotent; the fixture calls it again) leaves nothing behind."""
    import psycopg2
    import redis

    index = deployment.redis.index
    deployment.stop()
    assert not [c.name for c in deployment.components.values() if c.alive]
    conn = psycopg2.connect(host=deployment.db.host, port=deployment.db.port, user=deployment.db.user,
                            dbname="postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (deployment.db.name,))
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()
    assert deployment.redis.index is None
    assert redis.Redis(host=deployment.redis.host, port=deployment.redis.port, db=index).dbsize() == 0
    assert (deployment.logs / "scheduler.log").stat().st_size > 0  # logs are kept
