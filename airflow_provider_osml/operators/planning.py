"""``validate_request`` and ``plan_regions``: everything checked and planned before any model call."""

from __future__ import annotations

import logging
import time

from airflow_provider_osml import imagery, status
from airflow_provider_osml.operators.context import (
    PLAN,
    SELECTION,
    STAGES,
    STATUS_RECORD,
    TaskContext,
    open_request_image,
)
from airflow_provider_osml.operators.settings import load_settings
from airflow_provider_osml.operators.work_store import WorkStore
from airflow_provider_osml.request import ImageRequest, parse_image_request
from airflow_provider_osml.tiling import plan_image, region_key

log = logging.getLogger(__name__)


# --- validate_request ------------------------------------------------------------------------------


def validate_request(conf: dict) -> dict:
    """Parse and check the ImageRequest and open the image, before any model call."""
    settings = load_settings()
    request = parse_image_request(conf, allowed_roots=list(settings.allowed_roots))
    _check_sinks_available(request)
    ctx = TaskContext(settings, request, WorkStore(settings.work_store, request.job_id))
    with open_request_image(ctx) as dataset:
        info = imagery.image_info(dataset)
    for stale in (SELECTION, STATUS_RECORD, STAGES):  # a re-run of the same jobId must not report the last run's
        ctx.store.remove(stale)
    log.info("Job %s: image %s is %dx%d, %d band(s) %s", request.job_id, request.image_url, info.width,
             info.height, info.band_count, info.dtype)
    started = time.time()
    status.publish_status(settings.status_topic_arn, settings.aws_conn_id, status.STARTED,
                          job_id=request.job_id, image_id=request.image_id)
    return {
        "request": request.to_dict(),
        "image": info.to_dict(),
        "workStore": settings.work_store,
        "outputs": list(request.outputs),
        "startedAt": started,
    }


def _check_sinks_available(request: ImageRequest) -> None:
    # Fail now rather than after every model call (osml fails unknown sinks at the very end: spec 11 Q11).
    from airflow_provider_osml.sinks import SINK_TYPES

    for index, output in enumerate(request.outputs):
        if output["type"] not in SINK_TYPES:
            raise ValueError(
                f"outputs[{index}].type: {output['type']!r} sinks are not available in this version "
                f"(available: {', '.join(SINK_TYPES)})"
            )


# --- plan_regions ----------------------------------------------------------------------------------


def plan_regions(validated: dict) -> list[dict]:
    """Plan regions and tiles (both osml strategies); store the plan; return one descriptor per region."""
    ctx = TaskContext.from_validated(validated)
    request, image = ctx.request, validated["image"]
    bounds = None
    if request.region_of_interest:
        with open_request_image(ctx) as dataset:
            sensor_model = imagery.build_sensor_model(dataset)
        if sensor_model is None:
            raise ValueError("regionOfInterest: the image has no georeferencing to map the ROI to pixels")
        pixel_bounds = imagery.roi_pixel_bounds(
            request.region_of_interest, sensor_model, image["width"], image["height"]
        )
        if pixel_bounds is None:
            raise ValueError("regionOfInterest: does not intersect the image")
        minx, miny, maxx, maxy = pixel_bounds
        bounds = ((miny, minx), (maxx - minx, maxy - miny))
    plan = plan_image(
        image["width"],
        image["height"],
        tile_size=request.tile_size,
        tile_overlap=request.tile_overlap,
        region_size=request.region_size or ctx.settings.region_size,
        strategy=request.tiling_strategy,
        processing_bounds=bounds,
        max_regions=ctx.settings.max_regions,
    )
    ctx.store.write_json(PLAN, plan.to_dict())
    if request.range_adjustment != "NONE":
        # image-wide limits, so every region scales its tiles alike
        from airflow_provider_osml.range_adjustment import LIMITS_KEY, image_limits

        with open_request_image(ctx) as dataset:
            ctx.store.write_json(LIMITS_KEY, image_limits(dataset, request.range_adjustment))
    log.info("Job %s: %d region(s), %d tile(s)", request.job_id, len(plan.regions), plan.tile_count())
    status.publish_status(ctx.settings.status_topic_arn, ctx.settings.aws_conn_id, status.IN_PROGRESS,
                          job_id=request.job_id, image_id=request.image_id,
                          processing_duration=time.time() - validated["startedAt"])
    return [
        {"index": i, "region": [list(r[0]), list(r[1])], "key": region_key(r), "tileCount": len(plan.tiles(r))}
        for i, r in enumerate(plan.regions)
    ]
