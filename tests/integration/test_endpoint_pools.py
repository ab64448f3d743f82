"""Endpoint pools on a real scheduler (CeleryExecutor, PostgreSQL, Redis, 2 workers): two concurrent DAG runs
against one endpoint never have more requests in flight than the endpoint's pool allows.

The provider's cluster policy is registered the way a pip install registers it, through the ``airflow.policy``
entry point (a distribution on the components' PYTHONPATH), so the test also proves the scheduler loads it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from tests.conftest import REPO
from tests.integration.harness import AirflowDeployment

DAG_ID = "osml_model_runner"
POOL_SIZE = 2
TILE_WORKERS = 2  # -> pool_slots 2: one region task at a time may call the endpoint


def policy_distribution(site: Path) -> Path:
    """A minimal installed distribution whose only content is this provider's ``airflow.policy`` entry point."""
    info = site / "osml_policy_it-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: osml-policy-it\nVersion: 0.0\n")
    entry_point = (REPO / "pyproject.toml").read_text().split('[project.entry-points."airflow.policy"]')[1]
    name, _, target = entry_point.strip().splitlines()[0].partition("=")
    (info / "entry_points.txt").write_text(f"[airflow.policy]\n{name.strip()} = {target.strip().strip(chr(34))}\n")
    return site


def write_image(path: Path) -> Path:
    rng = np.random.default_rng(5)
    pixels = rng.integers(10, 250, size=(1, 256, 512), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": 512, "height": 256, "count": 1, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000.0, 5300000.0, 0.5, 0.5)}
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)
    return path


def test_two_concurrent_runs_never_exceed_the_endpoint_pool(celery_services, tmp_path):
    from airflow_provider_osml.models import ModelServer, create_model
    from airflow_provider_osml.operators.pools import endpoint_pool_name

    image = write_image(tmp_path / "image.tif")
    site = policy_distribution(tmp_path / "site")
    env = {
        "PYTHONPATH": f"{site}:{REPO}",
        "AIRFLOW__OSML__WORK_STORE": f"file://{tmp_path}/work",
        "AIRFLOW__OSML__ALLOWED_ROOTS": str(tmp_path),
        "AIRFLOW__OSML__TILE_WORKERS": str(TILE_WORKERS),
        "AIRFLOW__OSML__ENDPOINT_POOL_SIZE": str(POOL_SIZE),
    }
    with ModelServer(create_model("centerpoint"), latency_seconds=0.1) as server, AirflowDeployment(
        workers=2, worker_concurrency=2, env=env, run_dir=tmp_path / "airflow"
    ) as airflow:
        airflow.wait_for_dag(DAG_ID)
        runs = []
        for job in ("pool-a", "pool-b"):
            conf = {
                "jobId": job, "imageUrls": [str(image)],
                "imageProcessor": {"name": server.url, "type": "HTTP_ENDPOINT"},
                "imageProcessorTileSize": 64, "imageProcessorTileOverlap": 0, "imageProcessorTileFormat": "PNG",
                "regionSize": 256, "outputs": [{"type": "File", "path": str(tmp_path / "out")}],
            }
            runs.append(airflow.trigger(DAG_ID, conf))
        assert [airflow.wait(DAG_ID, run_id, timeout=600) for run_id in runs] == ["success", "success"]

        pool = endpoint_pool_name(server.url, "HTTP_ENDPOINT")
        assert airflow.api("GET", f"pools/{pool}")["slots"] == POOL_SIZE  # created by the scheduler
        inference = [ti for run_id in runs for ti in airflow.task_instances(DAG_ID, run_id, "infer_region")]
        assert len(inference) == 4  # 2 regions of 16 tiles per run
        assert {(ti["pool"], ti["pool_slots"]) for ti in inference} == {(pool, TILE_WORKERS)}
        others = [ti for run_id in runs for ti in airflow.task_instances(DAG_ID, run_id, "geolocate_region")]
        assert {ti["pool"] for ti in others} == {"default_pool"}

    assert server.invocations == 2 * 32
    assert 0 < server.in_flight_max <= POOL_SIZE
    # the pool admits one region task (2 slots) at a time, across both runs
    spans = sorted((_time(ti["start_date"]), _time(ti["end_date"])) for ti in inference)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)), spans


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


pytestmark = pytest.mark.timeout(900)
