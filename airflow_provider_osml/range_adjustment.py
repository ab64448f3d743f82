"""Dynamic range adjustment to 8-bit tiles (the toolkit's RangeAdjustmentType NONE / MINMAX / DRA).

osml-model-runner never passes it (spec 1.1); models that want 8-bit input get it from ``rangeAdjustment``.
Limits are image-wide (computed once by plan_regions from a decimated read), so every tile is scaled alike.
This is the toolkit's ``DRAParameters.from_counts`` and ``get_type_and_scales`` in numpy, without osgeo.
"""

from __future__ import annotations

import numpy as np

# work-store key of the image-wide limits, written by plan_regions, read by infer_region
LIMITS_KEY = "range_limits.json"
# the decimated read used for the histogram: at most this many pixels a side
_SAMPLE_SIDE = 1024


def dra_limits(counts: np.ndarray, first: float, last: float, low: float = 0.02, high: float = 0.98,
               a: float = 0.2, b: float = 0.4) -> dict:
    """Suggested (DRA) and actual (MINMAX) value range from a histogram, as the toolkit computes them."""
    bins = len(counts)
    nonzero = np.flatnonzero(counts)
    actual_min, actual_max = (int(nonzero[0]), int(nonzero[-1])) if nonzero.size else (0, bins - 1)
    cumulative = np.cumsum(counts, dtype=float)
    total = cumulative[-1]
    e_min = int(min(np.searchsorted(cumulative, low * total, side="left"), bins - 1))
    e_max = int(max(np.searchsorted(cumulative, high * total, side="right") - 1, 0))
    min_bin = max(actual_min, e_min - a * (e_max - e_min))
    max_bin = min(actual_max, e_max + b * (e_max - e_min))
    step = (last - first) / bins
    return {
        "DRA": (min_bin * step + first, max_bin * step + first),
        "MINMAX": (actual_min * step + first, actual_max * step + first),
    }


def image_limits(dataset, mode: str) -> list[tuple[float, float]] | None:
    """Per-band ``(low, high)`` source values that map to 0 and 255, or None for ``NONE``."""
    if mode == "NONE":
        return None
    scale = max(dataset.width, dataset.height) / _SAMPLE_SIDE
    shape = (dataset.count, max(1, round(dataset.height / max(scale, 1))), max(1, round(dataset.width / max(scale, 1))))
    sample = dataset.read(out_shape=shape, masked=True)  # uses overviews when the image has them
    limits = []
    for band in sample:
        values = band.compressed().astype(float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            limits.append((0.0, 255.0))
            continue
        lo, hi = float(values.min()), float(values.max())
        bins = 255 if band.dtype.kind == "f" else max(int(hi - lo), 1)
        counts, _ = np.histogram(values, bins=bins, range=(lo, hi if hi > lo else lo + 1))
        limits.append(tuple(float(v) for v in dra_limits(counts, lo, hi if hi > lo else lo + 1)[mode]))
    return limits


def to_uint8(pixels: np.ndarray, limits: list[tuple[float, float]]) -> np.ndarray:
    """Scale each band linearly so ``low -> 0`` and ``high -> 255``, clipping outside."""
    out = np.empty(pixels.shape, dtype=np.uint8)
    for index, (lo, hi) in enumerate(limits):
        span = hi - lo if hi > lo else 1.0
        scaled = (pixels[index].astype(np.float32) - lo) * (255.0 / span)
        out[index] = np.clip(np.rint(scaled), 0, 255)
    return out
