"""``select_features``: de-duplicate across tiles and regions, add output properties, store the result.

Streams: a first pass over the regions' stored features keeps only compact arrays (box, score, class,
region, position) plus the few seam fragments; NMS runs on the arrays; a second pass reads each region
again and writes the kept features one by one. Memory is a few dozen bytes per feature and one region's
features at a time, never a whole-image list of feature dicts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import shape

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery, seams
from airflow_provider_osml.operators.context import (
    FAILED_TILES,
    PLAN,
    SELECTED_FEATURES,
    SELECTION,
    TaskContext,
    open_request_image,
)
from airflow_provider_osml.selection import class_labels, nms, soft_nms, top_class
from airflow_provider_osml.tiling import TileWindow, TilingPlan

log = logging.getLogger(__name__)


# --- select_features -------------------------------------------------------------------------------


def select_features(validated: dict, regions: list[dict]) -> list[dict]:
    """De-duplicate across tiles and regions, add output properties, store one FeatureCollection."""
    ctx = TaskContext.from_validated(validated)
    request = ctx.request
    keys = [f"geolocated/{region['key']}.json" for region in regions]
    scan = scan_regions(ctx.store, keys, polygons=request.post_processing.polygon_iou)
    tiles_total = sum(r["tiles"] for r in regions)
    if scan.failed_tiles and not len(scan.scores) and len(scan.failed_tiles) == tiles_total:
        first = scan.failed_tiles[0]["error"]
        raise RuntimeError(f"every tile failed ({len(scan.failed_tiles)}); first error: {first}")
    plan = TilingPlan.from_dict(ctx.store.read_json(PLAN))
    tiles = np.array([TileWindow.from_region(t).as_list() for t in plan.all_tiles()], dtype=float)
    with open_request_image(ctx) as dataset:
        source = imagery.nitf_source_metadata(dataset, request.image_url)
        sensor_model = imagery.build_sensor_model(dataset)

    def locate(merged: list[dict]) -> None:
        # merged fragments have a new pixel shape: geolocate it as the tiles' features were
        feats.geolocate_tile_features(merged, sensor_model)

    chosen = choose(scan, request.post_processing, tiles, locate)
    selected = iter_selected(ctx.store, keys, scan, chosen)
    finished = feats.apply_output_properties(
        selected, job_id=request.job_id, feature_properties=request.feature_properties, source_metadata=source
    )
    with ctx.store.open_for_write(SELECTED_FEATURES) as out:
        written = _write_feature_collection(out, finished)
    ctx.store.write_json(FAILED_TILES, scan.failed_tiles)
    log.info(
        "Job %s: %d features before selection, %d seam fragments merged into %d, %d after",
        request.job_id, len(scan.scores), chosen.fragments_merged, len(chosen.merged), written,
    )
    counts = {
        "featuresBeforeSelection": len(scan.scores),
        "features": written,
        "seamFragmentsMerged": chosen.fragments_merged,
        "seamFragmentsDropped": chosen.fragments_dropped,
        "failedTiles": len(scan.failed_tiles),
        "tiles": tiles_total,
        "regions": len(regions),
        "path": str(ctx.store.path(SELECTED_FEATURES)),
    }
    ctx.store.write_json(SELECTION, counts)
    # the sinks map over this list, so it is what select_features hands on
    return list(request.outputs)


# --- pass 1: compact arrays ------------------------------------------------------------------------


@dataclass
class Scan:
    """Every stored feature as a row of arrays; full dicts only for seam fragments."""

    boxes: np.ndarray  # (N, 4) image pixels
    scores: np.ndarray  # (N,) top class score
    labels: np.ndarray  # (N,) int, one per top class iri
    region: np.ndarray  # (N,) index into the region keys
    offset: np.ndarray  # (N,) position in that region's feature list
    iris: list[str]  # label -> iri
    fragments: dict[int, dict]  # row -> feature, for features tagged with seams.SEAM_TILE
    polygons: list | None  # pixel shapes, only when the request asks for polygon IoU
    failed_tiles: list[dict] = field(default_factory=list)


def scan_regions(store, keys: Sequence[str], *, polygons: bool = False) -> Scan:
    """First pass: read one region at a time and keep arrays, not feature dicts."""
    boxes, scores, labels, region, offset = [], [], [], [], []
    lookup: dict[str, int] = {}
    fragments: dict[int, dict] = {}
    shapes: list | None = [] if polygons else None
    failed: list[dict] = []
    row = 0
    for index, key in enumerate(keys):
        stored = store.read_json(key)
        failed.extend(stored["failedTiles"])
        region_boxes, region_scores, region_labels = [], [], []  # one region's rows, then arrays
        for feature in stored["features"]:
            iri, score = top_class(feature["properties"].get("featureClasses"))
            region_boxes.append(_pixel_bounds(feature))
            region_scores.append(score)
            region_labels.append(lookup.setdefault(iri, len(lookup)))
            if seams.SEAM_TILE in feature["properties"]:
                fragments[row] = feature
            if shapes is not None:
                shapes.append(_pixel_geometry(feature))
            row += 1
        count = len(region_scores)
        boxes.append(np.array(region_boxes, dtype=np.float64).reshape(-1, 4))
        scores.append(np.array(region_scores, dtype=np.float64))
        labels.append(np.array(region_labels, dtype=np.int64))
        region.append(np.full(count, index, dtype=np.int32))
        offset.append(np.arange(count, dtype=np.int32))
        del stored, region_boxes, region_scores, region_labels
    return Scan(
        boxes=np.concatenate(boxes) if boxes else np.empty((0, 4)),
        scores=np.concatenate(scores) if scores else np.empty(0),
        labels=np.concatenate(labels) if labels else np.empty(0, dtype=np.int64),
        region=np.concatenate(region) if region else np.empty(0, dtype=np.int32),
        offset=np.concatenate(offset) if offset else np.empty(0, dtype=np.int32),
        iris=list(lookup),
        fragments=fragments,
        polygons=shapes,
        failed_tiles=failed,
    )


def _pixel_bounds(feature: dict) -> tuple[float, float, float, float]:
    """``features.image_bbox`` without building a shapely geometry for the usual single-ring polygon."""
    geometry = feature["properties"].get("imageGeometry")
    if geometry is not None and geometry.get("type") == "Polygon" and len(geometry.get("coordinates") or ()) == 1:
        ring = np.asarray(geometry["coordinates"][0], dtype=np.float64)
        if ring.ndim == 2 and ring.shape[0] and ring.shape[1] >= 2:
            return (*ring[:, :2].min(axis=0).tolist(), *ring[:, :2].max(axis=0).tolist())
    return feats.image_bbox(feature)


def _pixel_geometry(feature: dict):
    properties = feature["properties"]
    if properties.get("imageGeometry") is not None:
        return shape(properties["imageGeometry"])
    return shape({"type": "Polygon", "coordinates": [_ring(feats.image_bbox(feature))]})


def _ring(bbox) -> list[list[float]]:
    minx, miny, maxx, maxy = bbox
    return [[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]


# --- seams and NMS on the arrays -------------------------------------------------------------------


@dataclass
class Chosen:
    """What survives: rows of the scan, plus merged seam features (row ``N + k`` is ``merged[k]``)."""

    rows: np.ndarray  # kept rows, ascending
    scores: np.ndarray | None  # decayed score per kept row (Soft-NMS), else None
    merged: list[dict]
    fragments_merged: int = 0
    fragments_dropped: int = 0


def choose(scan: Scan, algorithm, tiles: np.ndarray, locate: Callable[[list[dict]], None] | None = None) -> Chosen:
    """Resolve seam fragments, then NMS / Soft-NMS (class-aware, osml semantics); NONE keeps all the rest."""
    n = len(scan.scores)
    alive = np.ones(n, dtype=bool)
    merged: list[dict] = []
    dropped = merged_count = 0
    if scan.fragments and len(tiles):
        candidates = np.flatnonzero(seams.crosses_tile_edges(scan.boxes, tiles))
        candidates = np.union1d(candidates, np.fromiter(scan.fragments, dtype=np.intp))
        windows = np.full((len(candidates), 4), np.nan)
        for at, row in enumerate(candidates.tolist()):
            if row in scan.fragments:
                windows[at] = scan.fragments[row]["properties"][seams.SEAM_TILE]
        replaced, groups = seams.resolve_fragments(scan.boxes[candidates], scan.labels[candidates], windows)
        alive[candidates[replaced]] = False
        dropped = int(replaced.sum())
        for group in groups:
            rows = candidates[group]
            alive[rows] = False
            merged_count += len(rows)
            merged.append(seams.merge_fragments([scan.fragments[r] for r in rows.tolist()]))
        if merged and locate is not None:
            locate(merged)

    rows = np.concatenate((np.flatnonzero(alive), n + np.arange(len(merged))))
    if algorithm.algorithm_type == "NONE" or len(rows) < 2:
        return Chosen(rows, None, merged, merged_count, dropped)
    extra_boxes = np.array([feats.image_bbox(f) for f in merged], dtype=np.float64).reshape(-1, 4)
    tops = [top_class(f["properties"].get("featureClasses")) for f in merged]
    boxes = np.concatenate((scan.boxes, extra_boxes))[rows]
    scores = np.concatenate((scan.scores, np.array([s for _, s in tops], dtype=np.float64)))[rows]
    iris = scan.iris + [iri for iri, _ in tops]
    labels = class_labels(iris)
    labels = np.concatenate((labels[scan.labels], labels[len(scan.iris):]))[rows]
    polygons = None
    if scan.polygons is not None:
        shapes = scan.polygons + [_pixel_geometry(f) for f in merged]
        polygons = [shapes[r] for r in rows.tolist()]
    if algorithm.algorithm_type == "NMS":
        kept = nms(boxes, scores, labels, algorithm.iou_threshold, polygons=polygons)
        return Chosen(np.sort(rows[kept]), None, merged, merged_count, dropped)
    kept, decayed = soft_nms(
        boxes, scores, labels, sigma=algorithm.sigma, skip_box_threshold=algorithm.skip_box_threshold,
        iou_threshold=algorithm.iou_threshold, polygons=polygons,
    )
    order = np.argsort(rows[kept])
    return Chosen(rows[kept][order], decayed[order], merged, merged_count, dropped)


# --- pass 2: write the kept features ---------------------------------------------------------------


def iter_selected(store, keys: Sequence[str], scan: Scan, chosen: Chosen) -> Iterator[dict]:
    """Second pass: each region once, its kept features in stored order; then the merged seam features."""
    n = len(scan.scores)
    stored_rows = chosen.rows < n
    rows = chosen.rows[stored_rows]
    decayed = None if chosen.scores is None else chosen.scores[stored_rows]
    bounds = np.searchsorted(scan.region[rows], np.arange(len(keys) + 1))
    for index, key in enumerate(keys):
        start, stop = int(bounds[index]), int(bounds[index + 1])
        if start == stop:
            continue
        features = store.read_json(key)["features"]
        for at in range(start, stop):
            feature = features[int(scan.offset[rows[at]])]
            yield _finish(feature, None if decayed is None else float(decayed[at]))
        del features
    merged_scores = None if chosen.scores is None else chosen.scores[~stored_rows]
    for k, row in enumerate(chosen.rows[~stored_rows].tolist()):
        yield _finish(chosen.merged[row - n], None if merged_scores is None else float(merged_scores[k]))


def _finish(feature: dict, decayed: float | None) -> dict:
    feature["properties"].pop(seams.SEAM_TILE, None)
    if decayed is not None:
        _set_decayed_score(feature, decayed)
    return feature


def _set_decayed_score(feature: dict, score: float) -> None:
    # osml writes the undecayed score (spec 11 Q4); we write the decayed one and keep the original as rawScore
    classes = feature["properties"].get("featureClasses") or []
    if not classes:
        return
    best = max(classes, key=lambda c: float(c.get("score", -1.0)))
    best["rawScore"] = best.get("rawScore", best.get("score"))
    best["score"] = score


# --- the former in-memory path, kept as the reference the streaming path is tested against ----------


def distill(features: list[dict], algorithm) -> list[dict]:
    """NMS / Soft-NMS over all features in memory (class-aware, osml semantics); NONE keeps everything."""
    if algorithm.algorithm_type == "NONE" or len(features) < 2:
        return features
    boxes = np.array([feats.image_bbox(f) for f in features], dtype=float).reshape(-1, 4)
    tops = [top_class(f["properties"].get("featureClasses") or []) for f in features]
    labels = class_labels([iri for iri, _ in tops])
    scores = np.array([score for _, score in tops], dtype=float)
    polygons = [_pixel_geometry(f) for f in features] if algorithm.polygon_iou else None
    if algorithm.algorithm_type == "NMS":
        return [features[i] for i in nms(boxes, scores, labels, algorithm.iou_threshold, polygons=polygons)]
    kept, decayed = soft_nms(
        boxes, scores, labels, sigma=algorithm.sigma, skip_box_threshold=algorithm.skip_box_threshold,
        iou_threshold=algorithm.iou_threshold, polygons=polygons,
    )
    selected = []
    for index, score in zip(kept, decayed, strict=True):
        feature = features[index]
        _set_decayed_score(feature, float(score))
        selected.append(feature)
    return selected


def _write_feature_collection(out, features) -> int:
    """Stream features one at a time, so no whole-image string is ever built; returns how many."""
    out.write('{"type": "FeatureCollection", "features": [')
    count = 0
    for feature in features:
        out.write((", " if count else "") + json.dumps(feature))
        count += 1
    out.write("]}\n")
    return count
