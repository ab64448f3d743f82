"""Tile-level fault handling through the DAG (``dag.test()``) against real local model servers:
transient failures, failed tiles named, re-runs that only call the model for failed tiles, endpoint pools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

pytestmark = [pytest.mark.airflow, pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")]

TILE, SIZE, MARKER = 128, 512, 251
# (col, row) of the 4 tiles (of 16) the failure model refuses: their top-left pixel is painted MARKER
FAILING = [(128, 0), (384, 128), (0, 256), (256, 384)]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    """4x4 tiles of 128 px; bright discs inside 64 px cells, so every object lies in exactly one tile."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(10, 50, size=(3, SIZE, SIZE), dtype=np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    for top in range(0, SIZE, 64):
        for left in range(0, SIZE, 64):
            if rng.random() < 0.25:
                continue
            radius = rng.integers(4, 10)
            cx, cy = rng.integers(radius + 3, 64 - radius - 3, size=2)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
            pixels[:, top : top + 64, left : left + 64][:, disc] = 220
    for col, row in FAILING:
        pixels[:, row, col] = MARKER
    path = tmp_path_factory.mktemp("faults") / "image.tif"
    profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000.0, 5300000.0, 0.5, 0.5)}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)
    return path


@pytest.fixture
def settings_env(monkeypatch, allowed_roots):
    for key, value in {"TILE_WORKERS": "2", "MODEL_RETRIES": "0", "TILE_ATTEMPTS": "3",
                       "TILE_RETRY_DELAY": "0.01", "ENDPOINT_POOL_SIZE": "3"}.items():
        monkeypatch.setenv(f"AIRFLOW__OSML__{key}", value)


@pytest.fixture
def endpoint_pool_policy():
    """The provider's cluster policy, registered as the ``airflow.policy`` entry point would register it."""
    from airflow.settings import get_policy_plugin_manager

    from airflow_provider_osml.operators import pools

    manager = get_policy_plugin_manager()
    if manager.is_registered(pools):  # installed with its entry point: Airflow loaded it already
        yield
        return
    # under the entry point's name, so a later load of the entry points skips it instead of failing
    manager.register(pools, name="osml_endpoint_pools")
    try:
        yield
    finally:
        manager.unregister(pools)


def blobs():
    from airflow_provider_osml.models import BlobsModel

    return BlobsModel(threshold=128)


def run(dag, image: Path, url: str, job_id: str, out: Path, **extra) -> tuple[dict, list[dict]]:
    conf = {
        "jobId": job_id, "imageUrls": [str(image)], "imageProcessor": {"name": url, "type": "HTTP_ENDPOINT"},
        "imageProcessorTileSize": TILE, "imageProcessorTileOverlap": 0, "imageProcessorTileFormat": "PNG",
        "regionSize": SIZE, "outputs": [{"type": "File", "path": str(out)}], **extra,
    }
    dag_run = dag.test(run_conf=conf)
    assert str(dag_run.state) == "success"
    import os

    work = Path(os.environ["AIRFLOW__OSML__WORK_STORE"].removeprefix("file://"))
    record = json.loads((work / job_id / "status.json").read_text())
    features = json.loads((out / f"{job_id}.geojson").read_text())["features"]
    return record | {"run_id": dag_run.run_id}, features


def signature(feature: dict) -> tuple:
    """What a detection is, whatever run produced it: its pixel box and its geometry."""
    bbox = tuple(round(v, 3) for v in feature["properties"]["imageBBox"])
    return bbox, json.dumps(feature["geometry"], sort_keys=True)


def tile_of(feature: dict) -> tuple[int, int]:
    minx, miny, _, _ = feature["properties"]["imageBBox"]
    return int(minx // TILE) * TILE, int(miny // TILE) * TILE


@pytest.fixture(scope="module")
def healthy(model_runner_dag, image, tmp_path_factory):
    """Features of a clean run against a healthy model (the reference for every faulty run)."""
    import os

    from airflow_provider_osml.models import ModelServer

    os.environ.setdefault("AIRFLOW__OSML__ALLOWED_ROOTS", str(image.parent))
    with ModelServer(blobs()) as server:
        record, features = run(model_runner_dag, image, server.url, "healthy-job", image.parent / "out")
    assert record["status"] == "SUCCESS" and server.invocations == 16
    assert len(features) > 30 and set(FAILING) <= {tile_of(f) for f in features}
    return {signature(f) for f in features}


def test_transient_failures_give_the_same_features_as_a_healthy_model(
    model_runner_dag, image, healthy, settings_env, tmp_path, monkeypatch
):
    from airflow_provider_osml.models import FailureModel, ModelServer

    monkeypatch.setenv("AIRFLOW__OSML__ALLOWED_ROOTS", f"{image.parent}:{tmp_path}")
    model = FailureModel(kind="error", every=5, base=blobs())  # every 5th call answers 500: 20% of calls
    with ModelServer(model) as server:
        record, features = run(model_runner_dag, image, server.url, "transient-job", tmp_path)
    assert record["status"] == "SUCCESS" and record["failedTiles"] == []
    assert server.failures >= 3 and server.invocations == 16 + server.failures
    assert {signature(f) for f in features} == healthy


def test_failed_tiles_are_named_and_a_rerun_only_calls_the_model_for_them(
    model_runner_dag, image, healthy, settings_env, tmp_path, monkeypatch, endpoint_pool_policy
):
    from airflow_provider_osml.models import FailureModel, ModelServer

    monkeypatch.setenv("AIRFLOW__OSML__ALLOWED_ROOTS", f"{image.parent}:{tmp_path}")
    model = FailureModel(kind="error", marker=MARKER, base=blobs())
    with ModelServer(model) as server:
        record, features = run(model_runner_dag, image, server.url, "partial-job", tmp_path / "a")
        assert record["status"] == "PARTIAL"
        assert sorted((t["window"][0], t["window"][1]) for t in record["failedTiles"]) == sorted(FAILING)
        assert all(t["window"][2:] == [TILE, TILE] and "HTTP 500" in t["error"] for t in record["failedTiles"])
        assert server.invocations == 12 + 4 * 3  # each failing tile tried TILE_ATTEMPTS times
        # the 12 other tiles' features are all delivered, and nothing else
        assert {signature(f) for f in features} == {s for s in healthy if _tile(s) not in FAILING}
        assert not {tile_of(f) for f in features} & set(FAILING)

        # the endpoint heals; re-running the same request calls the model for the 4 failed tiles only
        model.marker = None
        server.reset_counters()
        record, features = run(model_runner_dag, image, server.url, "partial-job", tmp_path / "b")
        assert server.invocations == 4
        assert record["status"] == "SUCCESS" and record["failedTiles"] == []
        assert {signature(f) for f in features} == healthy
        assert_endpoint_pool(record["run_id"], server.url)


def assert_endpoint_pool(run_id: str, url: str) -> None:
    """The scheduler-side policy put every mapped infer_region TI into the endpoint's pool."""
    from airflow.models.pool import Pool
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_provider_osml.operators.pools import endpoint_pool_name

    name = endpoint_pool_name(url, "HTTP_ENDPOINT")
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.run_id == run_id, TaskInstance.dag_id == "osml_model_runner")
        ).all()
        pooled = {ti.task_id: (ti.pool, ti.pool_slots) for ti in tis if ti.task_id == "infer_region"}
        others = {ti.pool for ti in tis if ti.task_id != "infer_region"}
        mapped = [ti.map_index for ti in tis if ti.task_id == "infer_region"]
        assert mapped == [0]
        assert pooled == {"infer_region": (name, 2)}  # pool_slots = TILE_WORKERS
        assert others == {"default_pool"}
        assert session.scalar(select(Pool.slots).where(Pool.pool == name)) == 3  # ENDPOINT_POOL_SIZE


def _tile(sig: tuple) -> tuple[int, int]:
    minx, miny = sig[0][0], sig[0][1]
    return int(minx // TILE) * TILE, int(miny // TILE) * TILE


def test_stored_tiles_are_reused_only_for_the_same_request(tmp_path):
    from airflow_provider_osml.operators.context import TaskContext
    from airflow_provider_osml.operators.inference import inference_fingerprint, previous_results
    from airflow_provider_osml.operators.settings import load_settings
    from airflow_provider_osml.operators.work_store import WorkStore

    request = {"jobId": "j", "imageUrls": [str(tmp_path / "x.tif")], "imageProcessorTileFormat": "PNG",
               "imageProcessor": {"name": "http://127.0.0.1:1/invocations", "type": "HTTP_ENDPOINT"},
               "outputs": [{"type": "File", "path": "/a"}]}
    validated = {"request": request, "image": {"width": 10}}
    region = {"key": "r0", "region": [[0, 0], [10, 10]]}
    base = inference_fingerprint(validated, region)
    same = {**request, "outputs": [{"type": "S3", "bucket": "b"}], "jobName": "renamed"}
    assert inference_fingerprint({**validated, "request": same}, region) == base
    for changed in ({**request, "imageProcessorTileFormat": "GTIFF"},
                    {**request, "imageProcessor": {"name": "http://127.0.0.1:2/invocations", "type": "HTTP_ENDPOINT"}},
                    {**request, "imageProcessorParameters": {"CustomAttributes": "threshold=9"}}):
        assert inference_fingerprint({**validated, "request": changed}, region) != base
    assert inference_fingerprint({**validated, "image": {"width": 11}}, region) != base
    assert inference_fingerprint(validated, {"key": "r0", "region": [[0, 0], [10, 12]]}) != base

    store = WorkStore(f"file://{tmp_path}", "j")
    ctx = TaskContext(load_settings(), None, store)
    tile = {"window": [0, 0, 10, 10], "features": [], "truncatedDropped": 0}
    store.write_json("inference/r0.json", {"fingerprint": base, "tiles": [tile], "failedTiles": []})
    assert previous_results(ctx, "r0", base) == {(0, 0, 10, 10): tile}
    assert previous_results(ctx, "r0", "another request") == {}
    assert previous_results(ctx, "r1", base) == {}


class WorkerDied(BaseException):
    """Stands in for a killed worker: not an ``Exception``, so no tile handler records it as a failed tile."""


def test_a_region_task_killed_midway_is_resumed_from_its_checkpoint(image, settings_env, tmp_path, monkeypatch):
    from airflow_provider_osml.models import ModelServer
    from airflow_provider_osml.operators import inference, planning

    monkeypatch.setenv("AIRFLOW__OSML__ALLOWED_ROOTS", f"{image.parent}:{tmp_path}")
    monkeypatch.setenv("AIRFLOW__OSML__TILE_WORKERS", "1")  # tiles in plan order: the crash point is exact
    monkeypatch.setenv("AIRFLOW__OSML__REGION_CHECKPOINT_SECONDS", "0")
    with ModelServer(blobs()) as server:
        conf = {"jobId": "killed-region", "imageUrls": [str(image)],
                "imageProcessor": {"name": server.url, "type": "HTTP_ENDPOINT"},
                "imageProcessorTileSize": TILE, "imageProcessorTileOverlap": 0, "imageProcessorTileFormat": "PNG",
                "regionSize": SIZE, "outputs": [{"type": "File", "path": str(tmp_path)}]}
        validated = planning.validate_request(conf)
        [region] = planning.plan_regions(validated)
        real_call = inference.call_model
        calls = []

        def dies_on_the_seventh_tile(*args, **kwargs):
            calls.append(1)
            if len(calls) >= 7:
                raise WorkerDied
            return real_call(*args, **kwargs)

        monkeypatch.setattr(inference, "call_model", dies_on_the_seventh_tile)
        with pytest.raises(WorkerDied):
            inference.infer_region(validated, region)
        assert server.invocations == 6
        monkeypatch.setattr(inference, "call_model", real_call)
        resumed = inference.infer_region(validated, region)  # what Airflow's retry of the task does
        assert server.invocations == 16  # the 6 checkpointed tiles were not asked again
    assert resumed["tilesInvoked"] == 10 and resumed["failedTiles"] == 0 and resumed["tiles"] == 16

    clean_validated = planning.validate_request({**conf, "jobId": "clean-region"})
    with ModelServer(blobs()) as server:
        clean_validated["request"]["imageProcessor"]["name"] = server.url
        clean = inference.infer_region(clean_validated, planning.plan_regions(clean_validated)[0])
    assert clean["features"] == resumed["features"]
