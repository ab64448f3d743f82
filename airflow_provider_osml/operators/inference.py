"""``infer_region``: read a region once, cut and encode its tiles, send them to the model endpoint."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery, seams
from airflow_provider_osml.hooks.invocation_counts import InvocationCounts
from airflow_provider_osml.operators.context import PLAN, TaskContext, open_request_image
from airflow_provider_osml.range_adjustment import LIMITS_KEY
from airflow_provider_osml.tiling import TileWindow, TilingPlan

log = logging.getLogger(__name__)


# --- infer_region ----------------------------------------------------------------------------------


def create_endpoint_client(ctx: TaskContext):
    """The hook that sends tiles to the request's model endpoint (checked against the allow-list first).

    Returns ``(invoke, counts)``: ``invoke(payload)`` answers one tile; ``counts`` are the hook's
    :class:`~airflow_provider_osml.hooks.invocation_counts.InvocationCounts`.
    """
    request, settings = ctx.request, ctx.settings
    if request.model_invoke_mode == "HTTP_ENDPOINT":
        from airflow_provider_osml.hooks.http_endpoint import HttpEndpointHook

        hook = HttpEndpointHook(
            endpoint_url=request.model_name,
            pool_size=settings.tile_workers,
            connect_timeout=settings.model_connect_timeout,
            read_timeout=settings.model_read_timeout,
            retries=settings.model_retries,
            verify=settings.tls_verify,
            allowed_hosts=settings.model_allowed_hosts,
            allow_link_local=settings.model_allow_link_local,
        )
        return partial(hook.invoke, content_type=request.model_parameters.get("ContentType")), hook.counts
    from airflow_provider_osml.hooks.sagemaker_runtime import SageMakerRuntimeHook

    hook = SageMakerRuntimeHook(aws_conn_id=settings.aws_conn_id, assumed_role=request.model_assumed_role)
    return partial(hook.invoke, endpoint_name=request.model_name, parameters=request.model_parameters), hook.counts


def inference_fingerprint(validated: dict, region: dict) -> str:
    """What a region's stored tile results depend on: the request's image/model/tiling fields and the image.

    A re-run of the same jobId reuses stored tiles only when this matches, so a new request that reuses a
    jobId with another model, tiling or image never picks up stale detections.
    """
    request = dict(validated["request"])
    for unrelated in ("jobName", "outputs", "postProcessing", "featureProperties"):
        request.pop(unrelated, None)
    image_url = (request.get("imageUrls") or [""])[0]
    identity = None
    if image_url and "://" not in image_url and os.path.exists(image_url):
        stat = os.stat(image_url)
        identity = [stat.st_size, stat.st_mtime_ns]
    blob = json.dumps([request, validated.get("image"), identity, region["region"]], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def previous_results(ctx: TaskContext, key: str, fingerprint: str) -> dict[tuple, dict]:
    """Successful tiles of an earlier attempt at this region (same fingerprint), by window."""
    name = f"inference/{key}.json"
    if not ctx.store.exists(name):
        return {}
    stored = ctx.store.read_json(name)
    if stored.get("fingerprint") != fingerprint:
        log.info("Region %s: stored results are from another request; processing every tile", key)
        return {}
    return {tuple(t["window"]): t for t in stored.get("tiles", [])}


def call_model(invoke, payload: bytes, attempts: int, delay: float, counts=None) -> list[dict]:
    """Invoke and validate, retrying a tile whose call fails or whose answer is malformed.

    The hooks already retry transport errors, 429 and 5xx; this outer loop also covers garbage answers
    and errors that outlast the hook's retries, with exponential backoff and full jitter.
    """
    for attempt in range(1, attempts + 1):
        try:
            return feats.normalize_model_output(invoke(payload))
        except Exception:
            if attempt == attempts:
                raise
            if counts is not None:
                counts.add(retries=1)
            time.sleep(random.uniform(0, delay * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


def store_region_results(ctx: TaskContext, key: str, fingerprint: str, tiles: list[TileWindow],
                         done_before: dict, fresh: dict, failed: list[dict], *, complete: bool = True) -> list[dict]:
    """Write the region's tile results (a checkpoint while ``complete`` is False); return them.

    Plan order, whichever attempt produced each tile, so a resumed run stores what a clean run stores.
    """
    results = [done_before.get(w) or fresh[w] for w in (tuple(t.as_list()) for t in tiles)
               if w in done_before or w in fresh]
    ctx.store.write_json(f"inference/{key}.json", {"fingerprint": fingerprint, "tiles": results,
                                                    "failedTiles": failed, "complete": complete})
    return results


def infer_region(validated: dict, region: dict) -> dict:
    """Read the region once, cut and encode its tiles, call the model concurrently, keep image pixels.

    Tiles already processed by an earlier attempt of the same request are reused, so clearing the task or
    re-running the job only calls the model for the tiles that failed.
    """
    ctx = TaskContext.from_validated(validated)
    request = ctx.request
    plan = TilingPlan.from_dict(ctx.store.read_json(PLAN))
    region_bounds = (tuple(region["region"][0]), tuple(region["region"][1]))
    tiles = [TileWindow.from_region(t) for t in plan.tiles(region_bounds)]
    all_tiles = np.array([TileWindow.from_region(t).as_list() for t in plan.all_tiles()], dtype=float)
    (prow, pcol), (pwidth, pheight) = plan.processing_bounds
    bounds = (pcol, prow, pcol + pwidth, prow + pheight)
    region_window = TileWindow.from_region(region_bounds)
    fingerprint = inference_fingerprint(validated, region)
    done_before = previous_results(ctx, region["key"], fingerprint)
    todo = [tile for tile in tiles if tuple(tile.as_list()) not in done_before]
    if done_before:
        log.info("Region %s: reusing %d tile result(s), processing %d", region["key"], len(tiles) - len(todo),
                 len(todo))
    invoke, counts = create_endpoint_client(ctx) if todo else (None, InvocationCounts())
    settings = ctx.settings
    started = time.monotonic()

    with open_request_image(ctx) as dataset:
        limits = ctx.store.read_json(LIMITS_KEY) if todo and request.range_adjustment != "NONE" else None
        pixels = imagery.RegionPixels(dataset, region_window.as_list(), todo, range_limits=limits) if todo else None

        def process(tile: TileWindow) -> dict:
            try:
                payload = imagery.encode_tile(
                    pixels.chip(tile),
                    request.tile_format,
                    request.tile_compression,
                    transform=imagery.window_transform(dataset, *tile.as_list()),
                    crs=dataset.crs,
                )
            finally:
                pixels.release(tile)
            inference_time = feats.utc_timestamp()
            detections = call_model(invoke, payload, settings.tile_attempts, settings.tile_retry_delay, counts)
            in_image = feats.to_image_pixels(detections, tile.col, tile.row, inference_time)
            kept = seams.screen_tile_features(in_image, tile.as_list(), all_tiles, bounds)
            return {"window": tile.as_list(), "features": kept, "truncatedDropped": len(in_image) - len(kept)}

        fresh, failed = {}, []
        last_checkpoint = time.monotonic()
        with ThreadPoolExecutor(max_workers=settings.tile_workers, thread_name_prefix="tile") as pool:
            futures = [(tile, pool.submit(process, tile)) for tile in todo]
            for done, (tile, future) in enumerate(futures, start=1):
                try:
                    fresh[tuple(tile.as_list())] = future.result()
                except Exception as exc:  # a failed tile is recorded by name, never dropped in silence
                    log.warning("Tile %s failed after %d attempt(s): %s", tile.key, settings.tile_attempts, exc)
                    failed.append({"window": tile.as_list(), "error": f"{type(exc).__name__}: {exc}"})
                if done % 50 == 0 or done == len(todo):
                    rate = done / max(time.monotonic() - started, 1e-9)
                    log.info("Region %s: %d/%d tiles done (%.1f tiles/s)", region["key"], done, len(todo), rate)
                if done < len(todo) and time.monotonic() - last_checkpoint >= settings.region_checkpoint_seconds:
                    # a worker that dies now loses only the tiles since this point: the retry reuses the rest
                    store_region_results(ctx, region["key"], fingerprint, tiles, done_before, fresh, failed,
                                         complete=False)
                    last_checkpoint = time.monotonic()

    results = store_region_results(ctx, region["key"], fingerprint, tiles, done_before, fresh, failed)
    return {
        "key": region["key"],
        "tiles": len(tiles),
        "tilesInvoked": len(todo),
        "failedTiles": len(failed),
        "features": sum(len(r["features"]) for r in results),
        "truncatedDropped": sum(r["truncatedDropped"] for r in results),
        "seconds": round(time.monotonic() - started, 3),
        "modelInvocation": counts.as_dict(),
    }
