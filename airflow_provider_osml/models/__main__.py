"""``python -m airflow_provider_osml.models NAME --port N``: serve a reference model until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from airflow_provider_osml.models import MODELS, serve_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_osml.models", description=__doc__)
    parser.add_argument("name", choices=sorted(MODELS), help="model to serve")
    # SageMaker starts containers with a trailing "serve" argument.
    parser.add_argument("command", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", 8080)))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --host (e.g. 0.0.0.0)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to sleep before each answer")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    centerpoint = parser.add_argument_group("centerpoint")
    centerpoint.add_argument(
        "--segmentation", action="store_true", help="newer output (hexagon imageGeometry)"
    )
    centerpoint.add_argument("--bbox-percentage", type=float)
    blobs = parser.add_argument_group("blobs")
    blobs.add_argument("--threshold", type=float, help="intensity threshold (default: Otsu)")
    blobs.add_argument("--min-area", type=int)
    flood = parser.add_argument_group("flood")
    flood.add_argument("--flood-volume", type=int, help="boxes per tile (default 100)")
    flood.add_argument("--seed", type=int)
    failure = parser.add_argument_group("failure")
    failure.add_argument("--kind", help="error, throttle, timeout, slow, garbage, not_geojson, no_geometry, nan")
    failure.add_argument("--marker", type=float, help="fail tiles whose top-left pixel has this value")
    failure.add_argument("--fail-fraction", type=float, help="fail this fraction of distinct tiles")
    failure.add_argument("--every", type=int, help="fail every N-th call (transient faults)")
    failure.add_argument("--hang-seconds", type=float)
    selector = parser.add_argument_group("all (model chosen by the model_selection custom attribute)")
    selector.add_argument("--default", help="model when the request names none (default centerpoint)")
    return parser


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options given on the command line, checked against the chosen model."""
    given = {
        "segmentation": True if args.segmentation else None,
        "bbox_percentage": args.bbox_percentage,
        "threshold": args.threshold,
        "min_area": args.min_area,
        "flood_volume": args.flood_volume,
        "seed": args.seed,
        "kind": args.kind,
        "marker": args.marker,
        "fail_fraction": args.fail_fraction,
        "every": args.every,
        "hang_seconds": args.hang_seconds,
        "default": args.default,
    }
    allowed = {
        "centerpoint": {"segmentation", "bbox_percentage"},
        "blobs": {"threshold", "min_area"},
        "flood": {"flood_volume", "bbox_percentage", "seed"},
        "failure": {"kind", "marker", "fail_fraction", "every", "hang_seconds"},
        "all": {"default"},
    }[args.name]
    options = {key: value for key, value in given.items() if value is not None}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"options not used by {args.name}: {', '.join(unknown)}")
    return options


def sagemaker_argv(argv: list[str]) -> list[str]:
    """SageMaker starts a container with the single argument ``serve``: serve ``$MODEL_SELECTION`` (default
    ``all``, every model) on all interfaces, port ``$SAGEMAKER_BIND_TO_PORT`` (default 8080)."""
    if argv[:1] != ["serve"]:
        return argv
    return [os.environ.get("MODEL_SELECTION", "all"), "--host", "0.0.0.0", "--allow-remote", *argv[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sagemaker_argv(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        server = serve_model(
            args.name,
            args.host,
            args.port,
            latency_seconds=args.latency,
            allow_remote=args.allow_remote,
            verbose=args.verbose,
            **model_options(args),
        )
    except (ValueError, OSError) as err:  # bad host/options, port in use
        parser.error(str(err))
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    print(server.url, flush=True)
    try:
        while not done.wait(1.0):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
