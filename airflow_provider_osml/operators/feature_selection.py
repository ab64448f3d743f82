"""``select_features``: de-duplicate across tiles and regions, add output properties, store the result."""

from __future__ import annotations

import json
import logging

import numpy as np

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery
from airflow_provider_osml.operators.context import (
    FAILED_TILES,
    SELECTED_FEATURES,
    SELECTION,
    TaskContext,
    open_request_image,
)
from airflow_provider_osml.selection import class_labels, nms, soft_nms, top_class

log = logging.getLogger(__name__)


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
    ctx.store.write_json(FAILED_TILES, failed_tiles)
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
