"""osml's metrics (spec 7) through Airflow's ``Stats``: StatsD, Datadog or OpenTelemetry, as ``[metrics]`` says.

Names are ``osml.<Operation>.<Metric>``, e.g. ``osml.ImageProcessing.Duration``; osml's CloudWatch dimensions
``ModelName`` and ``InputFormat`` travel as tags (kept by OpenTelemetry, Datadog and StatsD with
``statsd_influxdb_enabled``; plain StatsD drops tags). Durations are timers (milliseconds on the wire).
A metrics backend that is down never fails a task.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta

log = logging.getLogger(__name__)

PREFIX = "osml"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")

# osml's operations (the CloudWatch ``Operation`` dimension)
IMAGE_PROCESSING = "ImageProcessing"
REGION_PROCESSING = "RegionProcessing"
TILE_PROCESSING = "TileProcessing"
MODEL_INVOCATION = "ModelInvocation"
FEATURE_SELECTION = "FeatureSelection"
FEATURE_DISSEMINATION = "FeatureDissemination"


def _stats():
    from airflow.sdk.observability import stats

    return stats


def dimensions(validated: dict | None) -> dict[str, str]:
    """``ModelName`` and ``InputFormat`` of a validated request (osml: ``"http"`` for HTTP endpoints)."""
    if not validated:
        return {}
    processor = validated["request"].get("imageProcessor") or {}
    model = "http" if processor.get("type") == "HTTP_ENDPOINT" else processor.get("name")
    return {"ModelName": model, "InputFormat": (validated.get("image") or {}).get("driver")}


def _tags(operation: str, dims: dict[str, str | None]) -> dict[str, str]:
    tags = {"Operation": operation}
    tags.update({k: _UNSAFE.sub("_", str(v)) for k, v in dims.items() if v})
    return tags


def emit(
    operation: str,
    dims: dict[str, str | None] | None = None,
    *,
    duration: float | None = None,
    invocations: int = 0,
    errors: int = 0,
    throttles: int = 0,
    retries: int = 0,
) -> None:
    """One operation's metrics; zero counts are not sent, like osml's (EMF omits unset metrics)."""
    tags = _tags(operation, dims or {})
    name = f"{PREFIX}.{operation}"
    try:
        stats = _stats()
        if duration is not None:
            stats.timing(f"{name}.Duration", timedelta(seconds=duration), tags=tags)
        for metric, count in (("Invocations", invocations), ("Errors", errors), ("Throttles", throttles),
                              ("Retries", retries)):
            if count:
                stats.incr(f"{name}.{metric}", count, tags=tags)
    except Exception as exc:  # metrics are observability, never a reason to fail an image
        log.warning("metrics %s not sent: %s", name, exc)


@contextlib.contextmanager
def operation(name: str, dims: dict[str, str | None] | None = None) -> Iterator[None]:
    """Time a block as ``name``: ``Duration`` and ``Invocations`` always, ``Errors`` when it raises."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        emit(name, dims, duration=time.monotonic() - started, invocations=1, errors=1)
        raise
    emit(name, dims, duration=time.monotonic() - started, invocations=1)


def region_processed(validated: dict, result: dict) -> None:
    """Tile and model-call counts of one finished region (``infer_region``'s result)."""
    dims = dimensions(validated)
    tiles, failed = result.get("tiles", 0), result.get("failedTiles", 0)
    emit(TILE_PROCESSING, {"ModelName": dims.get("ModelName")}, invocations=tiles, errors=failed)
    calls = result.get("modelInvocation") or {}
    emit(MODEL_INVOCATION, {"ModelName": dims.get("ModelName")}, invocations=calls.get("calls", 0),
         errors=calls.get("errors", 0), throttles=calls.get("throttles", 0), retries=calls.get("retries", 0))
    if failed:  # osml counts a region with any failed tile as an error (spec 6.3)
        emit(REGION_PROCESSING, dims, errors=1)


def image_processed(validated: dict | None, status: str, duration: float) -> None:
    emit(IMAGE_PROCESSING, dimensions(validated), duration=duration, invocations=1,
         errors=0 if status == "SUCCESS" else 1)
