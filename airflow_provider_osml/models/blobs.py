"""A classical bright-object detector: threshold (Otsu by default) and 8-connected components."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import shapely
from scipy import ndimage

from airflow_provider_osml.models.base import (
    feature_collection,
    image_hex,
    parse_float,
    parse_int,
    stable_hex,
)

MODEL_METADATA = {"modelName": "blobs", "ontologyName": "blobs", "ontologyVersion": "1.0.0"}
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
MIN_STD = 1e-6
# Otsu class means closer than this fraction of the dtype range mean "nothing stands out".
MIN_SEPARATION = 1e-3


def intensity(image: np.ndarray) -> np.ndarray:
    """One float band: the mean of the tile's bands."""
    if image.ndim == 2:
        return image.astype(np.float64)
    return image.mean(axis=0, dtype=np.float64)


def dtype_max(image: np.ndarray, band: np.ndarray) -> float:
    """The largest value the tile's dtype can hold (floats: 1.0, or the data maximum when above 1)."""
    if image.dtype == np.bool_:
        return 1.0
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    return max(1.0, float(np.nanmax(band))) if band.size else 1.0


def otsu_threshold(band: np.ndarray, scale: float, bins: int = 256) -> float | None:
    """Otsu's threshold (pixels ``> t`` are objects), or None when the tile is nearly uniform."""
    values = band if np.isfinite(band).all() else band[np.isfinite(band)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    # The std pass is only worth paying for when the range is small.
    if hi - lo < MIN_STD or (hi - lo < 1.0 and float(values.std()) < MIN_STD):
        return None
    # Same bins as np.histogram(values, bins, (lo, hi)), computed directly because it is ~2x faster.
    index = np.minimum(((values - lo) * (bins / (hi - lo))).astype(np.intp), bins - 1)
    hist = np.bincount(index.ravel(), minlength=bins).astype(np.float64)
    centers = lo + (np.arange(bins) + 0.5) * ((hi - lo) / bins)
    w0 = np.cumsum(hist)
    w1 = np.cumsum(hist[::-1])[::-1]
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = np.cumsum((hist * centers)[::-1])[::-1] / np.maximum(w1, 1)
    between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
    best = int(np.argmax(between))
    if between[best] <= 0 or (m1[best + 1] - m0[best]) < MIN_SEPARATION * scale:
        return None
    return float(centers[best])


def row_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of labelled pixels: (label, y, x_start, x_stop) with x_stop exclusive."""
    fg = labels != 0
    pad = np.zeros((fg.shape[0], 1), dtype=bool)
    steps = np.diff(np.hstack([pad, fg, pad]).view(np.int8), axis=1)
    ys, x0 = np.nonzero(steps == 1)
    _, x1 = np.nonzero(steps == -1)  # row-major order pairs each stop with its start
    return labels[ys, x0], ys, x0, x1


def components(
    labels: np.ndarray, min_area: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[list[list[int]]]]:
    """Components with at least ``min_area`` pixels: their labels, areas, bboxes and convex hull rings.

    Works on horizontal runs rather than pixels, with all hulls computed in one vectorised shapely call.
    """
    run_label, ys, x0, x1 = row_runs(labels)
    order = np.argsort(run_label, kind="stable")  # stable: rows stay in ascending order per label
    run_label, ys, x0, x1 = run_label[order], ys[order], x0[order], x1[order]
    kept, first = np.unique(run_label, return_index=True)
    areas = np.add.reduceat(x1 - x0, first)
    big = areas >= min_area
    if not big.any():
        return kept[:0], areas[:0], np.zeros((0, 4), dtype=np.intp), []
    # Only the leftmost and rightmost corners of each (component, row) can be hull vertices.
    row_start = np.flatnonzero(np.diff(run_label, prepend=-1) | np.diff(ys, prepend=-1))
    run_label, ys = run_label[row_start], ys[row_start]
    x0, x1 = np.minimum.reduceat(x0, row_start), np.maximum.reduceat(x1, row_start)
    first = np.searchsorted(run_label, kept)
    bboxes = np.column_stack(
        (
            np.minimum.reduceat(x0, first),
            np.minimum.reduceat(ys, first),
            np.maximum.reduceat(x1, first),
            np.maximum.reduceat(ys, first) + 1,
        )
    )[big]
    rank = np.cumsum(big) - 1  # position of each component among the big ones
    row_rank = np.repeat(rank, np.diff(np.append(first, run_label.size)))
    select = np.repeat(big, np.diff(np.append(first, run_label.size)))
    ys, x0, x1, row_rank = ys[select], x0[select], x1[select], row_rank[select]
    corners = np.stack(
        (
            np.column_stack((x0, ys)),
            np.column_stack((x0, ys + 1)),
            np.column_stack((x1, ys)),
            np.column_stack((x1, ys + 1)),
        ),
        axis=1,
    ).reshape(-1, 2)
    hulls = shapely.convex_hull(
        shapely.multipoints(corners.astype(np.float64), indices=np.repeat(row_rank, 4))
    )
    ccw = shapely.is_ccw(shapely.get_exterior_ring(hulls))
    coords, owner = shapely.get_coordinates(hulls, return_index=True)
    splits = np.flatnonzero(np.diff(owner)) + 1
    rings = [ring.tolist() for ring in np.split(coords.astype(np.intp), splits)]
    # Counter-clockwise exterior rings (GeoJSON right-hand rule, with x right and y up).
    rings = [ring if is_ccw else ring[::-1] for ring, is_ccw in zip(rings, ccw, strict=True)]
    return kept[big], areas[big], bboxes, rings


class BlobsModel:
    """Bright connected regions of the tile, one feature per component of at least ``min_area`` pixels.

    Overridable per request: ``threshold``, ``min_area``, ``iri``.
    """

    name = "blobs"

    def __init__(self, threshold: float | None = None, min_area: int = 4, iri: str = "bright_object") -> None:
        self.threshold = None if threshold is None else float(threshold)
        self.min_area = int(min_area)
        self.iri = iri

    def __call__(self, image: np.ndarray, options: Mapping[str, Any]) -> dict:
        threshold = options.get("threshold", self.threshold)
        threshold = None if threshold in (None, "", "auto", "otsu") else parse_float(threshold)
        min_area = parse_int(options.get("min_area", self.min_area))
        iri = str(options.get("iri", self.iri))
        return feature_collection(self.detect(image, threshold, min_area, iri))

    def detect(self, image: np.ndarray, threshold: float | None, min_area: int, iri: str) -> list[dict]:
        band = intensity(image)
        scale = dtype_max(image, band)
        if threshold is None:
            threshold = otsu_threshold(band, scale)
            if threshold is None:
                return []
        labels, count = ndimage.label(band > threshold, structure=EIGHT_CONNECTED)
        if count == 0:
            return []
        kept, areas, bboxes, rings = components(labels, min_area)
        if not rings:
            return []
        # Mean intensity per component, summed over foreground pixels only.
        pixels = np.flatnonzero(labels)
        flat_labels = labels.ravel()[pixels]
        sums = np.bincount(flat_labels, weights=band.ravel()[pixels], minlength=count + 1)
        image_id = image_hex(image)
        features = []
        for label, area, bbox, ring in zip(
            kept.tolist(), areas.tolist(), bboxes.tolist(), rings, strict=True
        ):
            score = round(min(1.0, max(1e-4, float(sums[label] / area / scale))), 4)
            features.append(
                {
                    "type": "Feature",
                    "geometry": None,
                    "id": stable_hex(self.name, image_id, threshold, label),
                    "properties": {
                        "imageGeometry": {"type": "Polygon", "coordinates": [ring]},
                        "imageBBox": bbox,
                        "featureClasses": [{"iri": iri, "score": score}],
                        "modelMetadata": dict(MODEL_METADATA),
                        "image_id": image_id,
                    },
                }
            )
        return features
