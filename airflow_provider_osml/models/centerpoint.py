"""The deterministic centerpoint test model (osml-models 1.3.0 and the newer osml-model-runner test model)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from airflow_provider_osml.models.base import (
    feature_collection,
    image_hex,
    parse_bool,
    parse_float,
    stable_hex,
)

MODEL_METADATA = {"modelName": "centerpoint", "ontologyName": "centerpoint", "ontologyVersion": "1.0.0"}


def center_bbox(width: int, height: int, p: float) -> list[float]:
    """``[w/2 - p*w, h/2 - p*h, w/2 + p*w, h/2 + p*h]``, in the reference's operation order."""
    cx, cy = width / 2, height / 2
    sx, sy = width * p, height * p
    return [cx - sx, cy - sy, cx + sx, cy + sy]


def _unit_hexagon() -> list[list[float]]:
    # matplotlib CirclePolygon(resolution=6).get_path().vertices, computed the same way so floats match.
    theta = (2 * np.pi / 6) * np.arange(7) + np.pi / 2
    vertices = np.column_stack((np.cos(theta), np.sin(theta))).tolist()
    vertices.append(vertices[0])
    return vertices


_HEXAGON = _unit_hexagon()


def center_hexagon(width: int, height: int, p: float) -> list[list[float]]:
    """The reference's segmentation ring (8 points; note it is not centred in the bbox)."""
    sx, sy = p * width, p * height
    cx, cy = width / 2, height / 2
    return [[round(((x + 1) / 2) * sx + cx, 4), round(((y + 1) / 2) * sy + cy, 4)] for x, y in _HEXAGON]


class CenterpointModel:
    """One detection at the tile centre sized ``bbox_percentage`` of the tile.

    ``segmentation=False`` gives the osml-models 1.3.0 legacy feature (``bounds_imcoords``...);
    ``segmentation=True`` the newer test model's feature (hexagon ``imageGeometry``, ``imageBBox``...).
    Overridable per request: ``segmentation``, ``bbox_percentage``.
    """

    name = "centerpoint"

    def __init__(self, bbox_percentage: float = 0.1, segmentation: bool = False) -> None:
        self.bbox_percentage = float(bbox_percentage)
        self.segmentation = bool(segmentation)

    def __call__(self, image: np.ndarray, options: Mapping[str, Any]) -> dict:
        p = parse_float(options.get("bbox_percentage", self.bbox_percentage))
        segmentation = parse_bool(options.get("segmentation", self.segmentation))
        height, width = int(image.shape[-2]), int(image.shape[-1])
        image_id = image_hex(image)
        feature_id = stable_hex(self.name, image_id, p, segmentation)
        bbox = center_bbox(width, height, p)
        if not segmentation:
            return feature_collection([_legacy_feature(feature_id, image_id, bbox)])
        return feature_collection([_feature(feature_id, image_id, bbox, center_hexagon(width, height, p))])


def _legacy_feature(feature_id: str, image_id: str, bbox: list[float]) -> dict:
    return {
        "type": "Feature",
        "geometry": {"coordinates": [0.0, 0.0], "type": "Point"},
        "id": feature_id,
        "properties": {
            "bounds_imcoords": bbox,
            "detection_score": 1.0,
            "feature_types": {"sample_object": 1.0},
            "image_id": image_id,
        },
    }


def _feature(feature_id: str, image_id: str, bbox: list[float], ring: list[list[float]]) -> dict:
    return {
        "type": "Feature",
        "geometry": None,
        "id": feature_id,
        "properties": {
            "imageGeometry": {"type": "Polygon", "coordinates": [ring]},
            "imageBBox": bbox,
            "featureClasses": [{"iri": "sample_object", "score": 1.0}],
            "modelMetadata": dict(MODEL_METADATA),
            "image_id": image_id,
        },
    }
