"""The tasks of the ``osml_model_runner`` DAG: arguments, XCom and work store in; core modules do the work.

Every function takes and returns small JSON (XCom); features travel through the work store.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery
from airflow_provider_osml.operators.settings import DeploymentSettings, load_settings
from airflow_provider_osml.operators.work_store import WorkStore
from airflow_provider_osml.request import ImageRequest, parse_image_request
from airflow_provider_osml.selection import class_labels, nms, soft_nms, top_class
from airflow_provider_osml.tiling import TileWindow, TilingPlan, plan_image, region_key

log = logging.getLogger(__name__)

SELECTED_FEATURES = "features.geojson"
STATUS_RECORD = "status.json"
PLAN = "plan.json"
SELECTION = "selection.json"


@dataclass
class TaskContext:
    """What every task rebuilds from the validated request: settings, request, work store."""

    settings: DeploymentSettings
    request: ImageRequest
    store: WorkStore

    @classmethod
    def from_validated(cls, validated: dict) -> TaskContext:
        settings = load_settings()
        request = parse_image_request(validated["request"], allowed_roots=list(settings.allowed_roots))
        return cls(settings, request, WorkStore(validated["workStore"], request.job_id))


def s3_access(settings: DeploymentSettings, role: str | None = None) -> imagery.S3Access:
    """Credentials and endpoint for GDAL ``s3://`` reads, from the AWS connection."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from airflow_provider_osml.hooks.aws_roles import assume_role

    hook = assume_role(AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="s3"), role)
    return imagery.S3Access(session=hook.get_session(), endpoint_url=hook.conn_config.endpoint_url)


def open_request_image(ctx: TaskContext):
    access = s3_access(ctx.settings, ctx.request.image_read_role) if ctx.request.image_url.startswith("s3://") else None
    return imagery.open_image(ctx.request.image_url, s3=access)


# --- validate_request ------------------------------------------------------------------------------


def validate_request(conf: dict) -> dict:
    """Parse and check the ImageRequest and open the image, before any model call."""
    settings = load_settings()
    request = parse_image_request(conf, allowed_roots=list(settings.allowed_roots))
    _check_sinks_available(request)
    ctx = TaskContext(settings, request, WorkStore(settings.work_store, request.job_id))
    with open_request_image(ctx) as dataset:
        info = imagery.image_info(dataset)
    for stale in (SELECTION, STATUS_RECORD):  # a re-run of the same jobId must not report the last run's
        ctx.store.remove(stale)
    log.info("Job %s: image %s is %dx%d, %d band(s) %s", request.job_id, request.image_url, info.width,
             info.height, info.band_count, info.dtype)
    return {
        "request": request.to_dict(),
        "image": info.to_dict(),
        "workStore": settings.work_store,
        "outputs": list(request.outputs),
        "startedAt": time.time(),
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
    log.info("Job %s: %d region(s), %d tile(s)", request.job_id, len(plan.regions), plan.tile_count())
    return [
        {"index": i, "region": [list(r[0]), list(r[1])], "key": region_key(r), "tileCount": len(plan.tiles(r))}
        for i, r in enumerate(plan.regions)
    ]


# --- infer_region ----------------------------------------------------------------------------------


def create_endpoint_client(ctx: TaskContext):
    """The hook that sends tiles to the request's model endpoint."""
    request = ctx.request
    if request.model_invoke_mode == "HTTP_ENDPOINT":
        from airflow_provider_osml.hooks.http_endpoint import HttpEndpointHook

        hook = HttpEndpointHook(
            endpoint_url=request.model_name,
            pool_size=ctx.settings.tile_workers,
            connect_timeout=ctx.settings.model_connect_timeout,
            read_timeout=ctx.settings.model_read_timeout,
            retries=ctx.settings.model_retries,
            verify=ctx.settings.verify_tls,
        )
        content_type = request.model_parameters.get("ContentType")
        return lambda payload: hook.invoke(payload, content_type=content_type)
    from airflow_provider_osml.hooks.sagemaker_runtime import SageMakerRuntimeHook

    hook = SageMakerRuntimeHook(aws_conn_id=ctx.settings.aws_conn_id, assumed_role=request.model_assumed_role)
    return lambda payload: hook.invoke(payload, endpoint_name=request.model_name,
                                       parameters=request.model_parameters)


def infer_region(validated: dict, region: dict) -> dict:
    """Read the region once, cut and encode its tiles, call the model concurrently, keep image pixels."""
    ctx = TaskContext.from_validated(validated)
    request = ctx.request
    plan = TilingPlan.from_dict(ctx.store.read_json(PLAN))
    region_bounds = (tuple(region["region"][0]), tuple(region["region"][1]))
    tiles = [TileWindow.from_region(t) for t in plan.tiles(region_bounds)]
    all_tiles = np.array([TileWindow.from_region(t).as_list() for t in plan.all_tiles()], dtype=float)
    (prow, pcol), (pwidth, pheight) = plan.processing_bounds
    bounds = (pcol, prow, pcol + pwidth, prow + pheight)
    region_window = TileWindow.from_region(region_bounds)
    invoke = create_endpoint_client(ctx)
    started = time.monotonic()

    with open_request_image(ctx) as dataset:
        pixels = imagery.read_window(dataset, *region_window.as_list())

        def process(tile: TileWindow) -> dict:
            x, y = tile.col - region_window.col, tile.row - region_window.row
            chip = pixels[:, y : y + tile.height, x : x + tile.width]
            payload = imagery.encode_tile(
                chip,
                request.tile_format,
                request.tile_compression,
                transform=imagery.window_transform(dataset, *tile.as_list()),
                crs=dataset.crs,
            )
            inference_time = feats.utc_timestamp()
            detections = feats.normalize_model_output(invoke(payload))
            in_image = feats.to_image_pixels(detections, tile.col, tile.row, inference_time)
            kept = [
                f for f in in_image
                if not feats.is_truncated_copy(feats.image_bbox(f), tile.as_list(), all_tiles, bounds)
            ]
            return {"window": tile.as_list(), "features": kept, "truncatedDropped": len(in_image) - len(kept)}

        results, failed = [], []
        with ThreadPoolExecutor(max_workers=ctx.settings.tile_workers, thread_name_prefix="tile") as pool:
            futures = [(tile, pool.submit(process, tile)) for tile in tiles]
            for done, (tile, future) in enumerate(futures, start=1):
                try:
                    results.append(future.result())
                except Exception as exc:  # a failed tile is recorded by name, never dropped in silence
                    log.warning("Tile %s failed: %s", tile.key, exc)
                    failed.append({"window": tile.as_list(), "error": f"{type(exc).__name__}: {exc}"})
                if done % 50 == 0 or done == len(tiles):
                    rate = done / max(time.monotonic() - started, 1e-9)
                    log.info("Region %s: %d/%d tiles done (%.1f tiles/s)", region["key"], done, len(tiles), rate)

    ctx.store.write_json(f"inference/{region['key']}.json", {"tiles": results, "failedTiles": failed})
    return {
        "key": region["key"],
        "tiles": len(tiles),
        "failedTiles": len(failed),
        "features": sum(len(r["features"]) for r in results),
        "truncatedDropped": sum(r["truncatedDropped"] for r in results),
        "seconds": round(time.monotonic() - started, 3),
    }


# --- geolocate_region ------------------------------------------------------------------------------


def geolocate_region(validated: dict, inference: dict) -> dict:
    """Geolocate a region's features, one Geolocator call per tile as osml does."""
    ctx = TaskContext.from_validated(validated)
    stored = ctx.store.read_json(f"inference/{inference['key']}.json")
    with open_request_image(ctx) as dataset:
        sensor_model = imagery.build_sensor_model(dataset)
    if sensor_model is None:
        log.warning("Image %s has no georeferencing: features keep pixel geometry only", ctx.request.image_url)
    located = []
    for tile in stored["tiles"]:
        feats.geolocate_tile_features(tile["features"], sensor_model)
        located.extend(tile["features"])
    ctx.store.write_json(
        f"geolocated/{inference['key']}.json", {"features": located, "failedTiles": stored["failedTiles"]}
    )
    return {**inference, "geolocated": sensor_model is not None}


# --- select_features -------------------------------------------------------------------------------


def distill(features: list[dict], algorithm) -> list[dict]:
    """NMS / Soft-NMS over all features (class-aware, osml semantics); NONE keeps everything."""
    if algorithm.algorithm_type == "NONE" or len(features) < 2:
        return features
    boxes = np.array([feats.image_bbox(f) for f in features], dtype=float).reshape(-1, 4)
    tops = [top_class(f["properties"].get("featureClasses") or []) for f in features]
    labels = class_labels([iri for iri, _ in tops])
    scores = np.array([score for _, score in tops], dtype=float)
    if algorithm.algorithm_type == "NMS":
        return [features[i] for i in nms(boxes, scores, labels, algorithm.iou_threshold)]
    kept, decayed = soft_nms(
        boxes, scores, labels, sigma=algorithm.sigma, skip_box_threshold=algorithm.skip_box_threshold
    )
    selected = []
    for index, score in zip(kept, decayed, strict=True):
        feature = features[index]
        _set_decayed_score(feature, float(score))
        selected.append(feature)
    return selected


def _set_decayed_score(feature: dict, score: float) -> None:
    # osml writes the undecayed score (spec 11 Q4); we write the decayed one and keep the original as rawScore
    classes = feature["properties"].get("featureClasses") or []
    if not classes:
        return
    best = max(classes, key=lambda c: float(c.get("score", -1.0)))
    best["rawScore"] = best.get("rawScore", best.get("score"))
    best["score"] = score


def select_features(validated: dict, regions: list[dict]) -> list[dict]:
    """De-duplicate across tiles and regions, add output properties, store one FeatureCollection."""
    ctx = TaskContext.from_validated(validated)
    request = ctx.request
    features, failed_tiles = [], []
    for region in regions:
        stored = ctx.store.read_json(f"geolocated/{region['key']}.json")
        features.extend(stored["features"])
        failed_tiles.extend(stored["failedTiles"])
    if failed_tiles and not features and len(failed_tiles) == sum(r["tiles"] for r in regions):
        raise RuntimeError(f"every tile failed ({len(failed_tiles)}); first error: {failed_tiles[0]['error']}")
    selected = distill(features, request.post_processing)
    with open_request_image(ctx) as dataset:
        source = imagery.nitf_source_metadata(dataset, request.image_url)
    finished = feats.apply_output_properties(
        selected, job_id=request.job_id, feature_properties=request.feature_properties, source_metadata=source
    )
    with ctx.store.open_for_write(SELECTED_FEATURES) as out:
        _write_feature_collection(out, finished)
    ctx.store.write_json("failed_tiles.json", failed_tiles)
    log.info("Job %s: %d features before selection, %d after", request.job_id, len(features), len(selected))
    counts = {
        "featuresBeforeSelection": len(features),
        "features": len(selected),
        "failedTiles": len(failed_tiles),
        "tiles": sum(r["tiles"] for r in regions),
        "regions": len(regions),
        "path": str(ctx.store.path(SELECTED_FEATURES)),
    }
    ctx.store.write_json(SELECTION, counts)
    # the sinks map over this list, so it is what select_features hands on
    return list(request.outputs)


def _write_feature_collection(out, features) -> None:
    """Stream features one at a time, so no whole-image string is ever built."""
    out.write('{"type": "FeatureCollection", "features": [')
    for index, feature in enumerate(features):
        out.write((", " if index else "") + json.dumps(feature))
    out.write("]}\n")


# --- write_sink ------------------------------------------------------------------------------------


def write_sink(validated: dict, output: dict) -> dict:
    """Deliver the selected FeatureCollection to one sink; a re-run overwrites the same object."""
    from airflow_provider_osml.sinks import create_sink

    ctx = TaskContext.from_validated(validated)
    sink = create_sink(output, aws_conn_id=ctx.settings.aws_conn_id)
    with ctx.store.local_file(SELECTED_FEATURES) as local:
        target = sink.write(ctx.request.job_id, local)
    log.info("Job %s: features written to %s", ctx.request.job_id, target)
    return {"type": output["type"], "target": target}


# --- report_status ---------------------------------------------------------------------------------


def image_status(selection: dict | None, outputs: list[dict], delivered: list[dict | None]) -> tuple[str, list]:
    """SUCCESS, PARTIAL or FAILED from what the run produced, and the names of the sinks that failed."""
    failed_sinks = [
        {"index": i, "type": out["type"]} for i, (out, res) in enumerate(zip(outputs, delivered, strict=False))
        if res is None
    ]
    failed_sinks += [{"index": i, "type": outputs[i]["type"]} for i in range(len(delivered), len(outputs))]
    if selection is None or len(failed_sinks) == len(outputs):
        return "FAILED", failed_sinks
    if selection["failedTiles"] or failed_sinks:
        return "PARTIAL", failed_sinks
    return "SUCCESS", failed_sinks


def report_status(validated: dict | None, delivered: list[dict | None]) -> dict:
    """Write the image's status record; fail the run when the image FAILED."""
    if validated is None:
        raise RuntimeError("FAILED: the ImageRequest was rejected (see the validate_request task log)")
    ctx = TaskContext.from_validated(validated)
    selection = ctx.store.read_json(SELECTION) if ctx.store.exists(SELECTION) else None
    outputs = validated["outputs"]
    status, failed_sinks = image_status(selection, outputs, delivered)
    record = {
        "jobId": ctx.request.job_id,
        "imageId": ctx.request.image_id,
        "status": status,
        "counts": selection or {},
        "sinks": [d for d in delivered if d],
        "failedSinks": failed_sinks,
        "failedTiles": ctx.store.read_json("failed_tiles.json") if ctx.store.exists("failed_tiles.json") else [],
        "durationSeconds": round(time.time() - validated["startedAt"], 3),
    }
    record["statusRecord"] = ctx.store.write_json(STATUS_RECORD, record)
    log.info("Job %s: %s", ctx.request.job_id, status)
    if status == "FAILED":
        raise RuntimeError(f"FAILED: image {ctx.request.image_id}; status record {record['statusRecord']}")
    return {k: record[k] for k in ("jobId", "status", "counts", "sinks", "failedSinks", "statusRecord")}
