"""The reference's load model: ``flood_volume`` random boxes per tile, seeded by the tile's pixels.

osml's ``flood`` draws from an unseeded RNG; ours seeds from the tile content (and ``seed``), so a tile gets
the same boxes on every call and a retried or re-run tile gives the same features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from airflow_provider_osml.models.base import (
    feature_collection,
    image_hex,
    parse_float,
    parse_int,
    stable_hex,
)


class FloodModel:
    """``flood_volume`` boxes of half-size ``ceil(bbox_percentage * width)`` at random places, random scores.

    Features use the osml-models 1.3.0 legacy properties, as the reference's flood model does.
    Overridable per request: ``flood_volume``, ``bbox_percentage``, ``seed``.
    """

    name = "flood"

    def __init__(self, flood_volume: int = 100, bbox_percentage: float = 0.1, seed: int = 0) -> None:
        self.flood_volume = int(flood_volume)
        self.bbox_percentage = float(bbox_percentage)
        self.seed = int(seed)

    def __call__(self, image: np.ndarray, options: Mapping[str, Any]) -> dict:
        volume = parse_int(options.get("flood_volume", self.flood_volume))
        p = parse_float(options.get("bbox_percentage", self.bbox_percentage))
        seed = parse_int(options.get("seed", self.seed))
        height, width = int(image.shape[-2]), int(image.shape[-1])
        image_id = image_hex(image)
        rng = np.random.default_rng([int(image_id[:16], 16), seed])
        half_w, half_h = math.ceil(p * width), math.ceil(p * height)
        cx = rng.uniform(0, width, volume)
        cy = rng.uniform(0, height, volume)
        scores = rng.uniform(0.0, 1.0, volume)
        features = []
        for i in range(volume):
            bbox = [
                round(max(0.0, cx[i] - half_w), 4),
                round(max(0.0, cy[i] - half_h), 4),
                round(min(float(width), cx[i] + half_w), 4),
                round(min(float(height), cy[i] + half_h), 4),
            ]
            score = round(float(scores[i]), 6)
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"coordinates": [0.0, 0.0], "type": "Point"},
                    "id": stable_hex(self.name, image_id, seed, i),
                    "properties": {
                        "bounds_imcoords": bbox,
                        "detection_score": score,
                        "feature_types": {"sample_object": score},
                        "image_id": image_id,
                    },
                }
            )
        return feature_collection(features)
