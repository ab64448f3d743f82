"""One vs two Celery workers on the same image and model (50 ms per tile); prints a table.

Starts a real deployment with the integration harness (PostgreSQL and Redis on 127.0.0.1, see
docs/deploy-celery.md), runs one warm-up request, then the measured request with one worker, adds a second
worker and runs it again. Times are the DAG run's own start/end dates from the REST API.

    python benchmarks/celery_scaling.py [--width 4096 --height 4096 --latency 0.05 --concurrency 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_provider_osml.demo import make_demo_scene  # noqa: E402
from airflow_provider_osml.models import serve_model  # noqa: E402
from tests.integration.harness import AirflowDeployment  # noqa: E402

DAG_ID = "osml_model_runner"


def request(scene, url: str, job_id: str, out: Path) -> dict:
    return scene.request(url, [{"type": "File", "path": str(out)}], job_id, tile_format="NITF")

def run_seconds(airflow: AirflowDeployment, conf: dict) -> tuple[float, int]:
    run_id = airflow.trigger(DAG_ID, conf)
    state = airflow.wait(DAG_ID, run_id, timeout=1800)
    if state != "success":
        raise SystemExit(f"run {run_id} {state}; logs in {airflow.logs}")
    run = airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")
    seconds = (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])).total_seconds()
    return seconds, len(airflow.task_instances(DAG_ID, run_id, "infer_region"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--height", type=int, default=4096)
    parser.add_argument("--latency", type=float, default=0.05, help="model latency per tile (s)")
    parser.add_argument("--concurrency", type=int, default=2, help="task slots per worker")
    parser.add_argument("--tile-workers", type=int, default=1, help="concurrent model calls per region task")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="osml-celery-bench-")).resolve()
    scene = make_demo_scene(base / "scene", width=args.width, height=args.height)
    env = {"AIRFLOW__OSML__WORK_STORE": f"file://{base}/work", "AIRFLOW__OSML__ALLOWED_ROOTS": str(base),
           "AIRFLOW__OSML__TILE_WORKERS": str(args.tile_workers),
           # with one worker, region tasks wait in the broker longer than the harness's test setting allows
           "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800"}
    rows = []
    with serve_model("blobs", threshold=scene.threshold, latency_seconds=args.latency) as server, \
            AirflowDeployment(workers=1, worker_concurrency=args.concurrency, env=env,
                              run_dir=base / "airflow") as airflow:
        run_seconds(airflow, request(scene, server.url, "warm-up", base / "out"))
        for workers in (1, 2):
            if workers == 2:
                airflow.start_worker()
            server.reset_counters()
            started = time.perf_counter()
            seconds, regions = run_seconds(airflow, request(scene, server.url, f"workers-{workers}", base / "out"))
            rows.append((workers, workers * args.concurrency, regions, server.invocations, seconds,
                         time.perf_counter() - started))
    print(f"image {args.width}x{args.height}, model latency {args.latency * 1000:.0f} ms/tile, "
          f"{args.tile_workers} model call(s) at a time per region task")
    print(f"{'workers':>7} {'slots':>5} {'regions':>7} {'tiles':>5} {'run s':>7} {'wall s':>7} {'speed-up':>8}")
    for workers, slots, regions, tiles, seconds, wall in rows:
        print(f"{workers:>7} {slots:>5} {regions:>7} {tiles:>5} {seconds:>7.1f} {wall:>7.1f} "
              f"{rows[0][4] / seconds:>7.2f}x")


if __name__ == "__main__":
    main()
