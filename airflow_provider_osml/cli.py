"""``osml-airflow``: run the osml_model_runner DAG on one machine (SQLite, local files, a local model).

Commands: ``demo``, ``run REQUEST.json``, ``validate REQUEST.json``, ``serve-model NAME --port N``.
Airflow is imported only after the environment is set, so it picks up this tool's AIRFLOW_HOME.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

DAG_ID = "osml_model_runner"
DAG_FILE = '''"""osml_model_runner, written by osml-airflow."""

from airflow_provider_osml.pipeline import osml_model_runner

dag = osml_model_runner()
'''


def _home(args) -> Path:
    return Path(args.home or os.environ.get("OSML_HOME") or Path.cwd() / ".osml").resolve()


def _allowed_roots(extra: list[Path]) -> str:
    roots = [r for r in os.environ.get("OSML_ALLOWED_ROOTS", "").split(os.pathsep) if r]
    roots += [str(Path.cwd().resolve())] + [str(p.resolve()) for p in extra]
    return os.pathsep.join(dict.fromkeys(roots))


def prepare_airflow(home: Path, allowed: list[Path], verbose: bool = False) -> None:
    """Point Airflow at a private home with SQLite, our DAG folder and a local work store."""
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "osml_model_runner.py").write_text(DAG_FILE)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__OSML__WORK_STORE": os.environ.get("AIRFLOW__OSML__WORK_STORE", f"file://{home / 'work'}"),
            "AIRFLOW__OSML__ALLOWED_ROOTS": _allowed_roots(allowed + [home]),
        }
    )
    if not verbose:
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    stamp = home / ".db-migrated"
    if not stamp.exists():
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            stdout=None if verbose else subprocess.DEVNULL,
            env=os.environ,
        )
        stamp.write_text("ok\n")


def run_dag(request: dict, home: Path, allowed: list[Path], verbose: bool = False) -> dict:
    """Run one ImageRequest through the DAG with ``dag.test()``; return the image's status record."""
    prepare_airflow(home, allowed, verbose)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(home / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    dag_run = dag.test(run_conf=request)
    work = Path(os.environ["AIRFLOW__OSML__WORK_STORE"].removeprefix("file://"))
    status_path = work / request["jobId"] / "status.json"
    record = json.loads(status_path.read_text()) if status_path.exists() else {}
    record.setdefault("status", "FAILED")
    record["dagRunState"] = str(getattr(dag_run, "state", "unknown"))
    return record


def absolutize(request: dict, base: Path) -> dict:
    """Make local image and File output paths absolute (the request validator only takes absolute paths)."""
    request = json.loads(json.dumps(request))

    def local(value: str) -> str:
        if "://" in value or value.startswith("/"):
            return value
        return str((base / value).resolve())

    if isinstance(request.get("imageUrls"), list):
        request["imageUrls"] = [local(u) if isinstance(u, str) else u for u in request["imageUrls"]]
    for output in request.get("outputs") or []:
        if isinstance(output, dict) and output.get("type") == "File" and isinstance(output.get("path"), str):
            output["path"] = local(output["path"])
    return request


@contextlib.contextmanager
def reference_model(name: str | None, **options):
    """Start a reference model server on 127.0.0.1 for the run, or nothing."""
    if not name:
        yield None
        return
    from airflow_provider_osml.models import serve_model

    server = serve_model(name, **options)
    try:
        yield server
    finally:
        server.stop()


def _print_summary(record: dict) -> None:
    counts = record.get("counts", {})
    print(f"status:   {record.get('status')} (DAG run {record.get('dagRunState')})")
    if counts:
        print(
            f"tiles:    {counts.get('tiles')} in {counts.get('regions')} region(s), "
            f"{counts.get('failedTiles')} failed"
        )
        print(f"features: {counts.get('featuresBeforeSelection')} detected, {counts.get('features')} after selection")
    for sink in record.get("sinks", []):
        print(f"result:   {sink['target']}")
    for sink in record.get("failedSinks", []):
        print(f"FAILED sink: outputs[{sink['index']}] ({sink['type']})")
    if record.get("statusRecord"):
        print(f"status record: {record['statusRecord']}")


def cmd_validate(args) -> int:
    from airflow_provider_osml.request import InvalidImageRequest, parse_image_request

    path = Path(args.request)
    request = absolutize(json.loads(path.read_text()), Path.cwd())
    roots = _allowed_roots([]).split(os.pathsep)
    try:
        parsed = parse_image_request(request, allowed_roots=roots)
    except InvalidImageRequest as exc:
        print(f"invalid request: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(parsed.to_dict(), indent=2))
    return 0


def cmd_run(args) -> int:
    from airflow_provider_osml.request import InvalidImageRequest, parse_image_request

    request = absolutize(json.loads(Path(args.request).read_text()), Path.cwd())
    options = {"segmentation": True} if args.segmentation else {}
    with reference_model(args.model, **options) as server:
        if server is not None:
            request["imageProcessor"] = {"name": server.url, "type": "HTTP_ENDPOINT"}
        if not request.get("outputs") and not request.get("outputBucket"):
            request["outputs"] = [{"type": "File", "path": str(Path.cwd() / "osml-results")}]
        try:
            parse_image_request(request, allowed_roots=_allowed_roots([]).split(os.pathsep))
        except InvalidImageRequest as exc:  # say it now, before Airflow starts
            print(f"invalid request: {exc}", file=sys.stderr)
            return 2
        record = run_dag(request, _home(args), [], args.verbose)
    _print_summary(record)
    return 0 if record["status"] in ("SUCCESS", "PARTIAL") else 1


def cmd_demo(args) -> int:
    from airflow_provider_osml.demo import make_demo_scene

    workdir = Path(args.dir).resolve()
    scene = make_demo_scene(workdir)
    results = workdir / "results"
    nms = {"step": "FEATURE_DISTILLATION", "algorithm": {"algorithmType": "NMS", "iouThreshold": 0.75}}
    with reference_model("blobs", threshold=scene.threshold) as server:
        request = {**scene.request(server.url, [{"type": "File", "path": str(results)}], "osml-demo"),
                   "postProcessing": [nms]}
        print(f"scene:    {scene.path} ({scene.width}x{scene.height}, {len(scene.objects)} objects, "
              f"{scene.seam_objects} across tile seams)")
        print(f"model:    blobs at {server.url}")
        record = run_dag(request, _home(args), [workdir], args.verbose)
    _print_summary(record)
    found = record.get("counts", {}).get("features")
    print(f"check:    {found} features for {len(scene.objects)} objects drawn")
    return 0 if record["status"] == "SUCCESS" else 1


def cmd_serve_model(args) -> int:
    from airflow_provider_osml.models import serve_model

    options = {}
    if args.segmentation:
        options["segmentation"] = True
    if args.threshold is not None:
        options["threshold"] = args.threshold
    server = serve_model(args.name, host=args.host, port=args.port, **options)
    print(f"{args.name} model serving at {server.url} (GET {server.base_url}/ping); Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="osml-airflow", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="Airflow home for local runs (default: ./.osml or $OSML_HOME)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Airflow's task logs")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate a scene, start the blobs model, run the DAG")
    demo.add_argument("--dir", default="osml-demo", help="where the scene and results go (default ./osml-demo)")
    demo.set_defaults(func=cmd_demo)

    run = commands.add_parser("run", help="run one ImageRequest through the DAG")
    run.add_argument("request", help="ImageRequest JSON file")
    run.add_argument("--model", help="start this reference model on 127.0.0.1 and use it as the endpoint")
    run.add_argument("--segmentation", action="store_true", help="reference model returns polygons")
    run.set_defaults(func=cmd_run)

    validate = commands.add_parser("validate", help="check an ImageRequest and print it with defaults")
    validate.add_argument("request", help="ImageRequest JSON file")
    validate.set_defaults(func=cmd_validate)

    serve = commands.add_parser("serve-model", help="serve a reference model (SageMaker container contract)")
    serve.add_argument("name", help="centerpoint or blobs")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--segmentation", action="store_true")
    serve.add_argument("--threshold", type=float)
    serve.set_defaults(func=cmd_serve_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
