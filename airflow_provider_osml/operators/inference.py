"""``infer_region``: read a region once, cut and encode its tiles, send them to the model endpoint."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery, seams
from airflow_provider_osml.operators.context import PLAN, TaskContext, open_request_image
from airflow_provider_osml.tiling import TileWindow, TilingPlan

log = logging.getLogger(__name__)


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
            kept = seams.screen_tile_features(in_image, tile.as_list(), all_tiles, bounds)
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
