"""Detections: model output normalisation, tile -> image pixels, geolocation, output properties.

Plain Python over GeoJSON-shaped dicts, following osml-model-runner's ``TileWorker._refine_features``
and ``feature_utils.add_properties_to_features`` (spec 4.1 to 4.4).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import geojson
import numpy as np
import shapely
from shapely.geometry import box, mapping, shape

# Properties that are internal or deprecated and never reach the output (spec 4.4 step 3).
# osml deletes them only when truthy (spec 11 Q16), so a detection_score of 0.0 leaked; we always delete.
_DROPPED_PROPERTIES = (
    "inferenceTime",
    "bounds_imcoords",
    "geom_imcoords",
    "detection_score",
    "feature_types",
    "image_id",
    "adjusted_feature_types",
    "detection",
)

_SHAPE_KEYS = ("imageGeometry", "imageBBox", "geom_imcoords", "bounds_imcoords", "detection")

# Tolerance, in pixels, for "this box touches that tile edge".
EDGE_TOLERANCE = 1.0


class MalformedModelOutput(ValueError):
    """The model answered, but not with usable GeoJSON detections."""


def utc_timestamp(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_model_output(payload: object) -> list[dict]:
    """Validate a model's FeatureCollection and bring every feature to the current property names.

    Legacy properties (``feature_types``, ``bounds_imcoords``, ``geom_imcoords``, ``detection``) are
    converted the way osml-model-runner converts them; anything unusable raises ``MalformedModelOutput``.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("features"), list):
        raise MalformedModelOutput("model output is not a GeoJSON FeatureCollection with a 'features' list")
    return [_normalize_feature(feature, index) for index, feature in enumerate(payload["features"])]


def _normalize_feature(feature: object, index: int) -> dict:
    if not isinstance(feature, dict) or not isinstance(feature.get("properties"), dict):
        raise MalformedModelOutput(f"features[{index}] is not a GeoJSON Feature with properties")
    # a null imageGeometry / imageBBox means "absent"; the toolkit would choke on it
    properties = {k: v for k, v in feature["properties"].items() if v is not None or k not in _SHAPE_KEYS}
    if "featureClasses" not in properties and isinstance(properties.get("feature_types"), dict):
        properties["featureClasses"] = [
            {"iri": iri, "score": float(score)} for iri, score in properties["feature_types"].items()
        ]
    geometry = _image_geometry(properties, index)
    if geometry is None:
        raise MalformedModelOutput(f"features[{index}] has no image geometry (imageGeometry or imageBBox)")
    if "imageGeometry" not in properties and "imageBBox" not in properties:
        # osml stores the converted legacy shape as imageGeometry (spec 4.1 step 3)
        properties["imageGeometry"] = mapping(geometry)
    if "imageBBox" not in properties and "bounds_imcoords" in properties:
        properties["imageBBox"] = [float(v) for v in properties["bounds_imcoords"]]
    _check_finite(geometry, index)
    normalized = {"type": "Feature", "geometry": feature.get("geometry"), "properties": properties}
    if "id" in feature:
        normalized["id"] = feature["id"]
    return normalized


def _image_geometry(properties: dict, index: int):
    """The feature's pixel shape, by osml's priority order (spec 3.2)."""
    try:
        if properties.get("imageGeometry") is not None:
            return shape(properties["imageGeometry"])
        if properties.get("imageBBox") is not None:
            return box(*_four_numbers(properties["imageBBox"]))
        if properties.get("geom_imcoords") is not None:
            return shapely.Polygon(properties["geom_imcoords"])
        detection = properties.get("detection")
        if isinstance(detection, dict) and detection.get("pixelCoordinates") is not None:
            return shape({"type": detection.get("type", "Polygon"), "coordinates": detection["pixelCoordinates"]})
        if properties.get("bounds_imcoords") is not None:
            return box(*_four_numbers(properties["bounds_imcoords"]))
    except (TypeError, ValueError, KeyError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise MalformedModelOutput(f"features[{index}] has an invalid image geometry: {exc}") from exc
    return None


def _four_numbers(values: object) -> list[float]:
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise ValueError(f"expected [minx, miny, maxx, maxy], got {values!r}")
    numbers = [float(v) for v in values]
    if not all(np.isfinite(numbers)):
        raise ValueError(f"NaN or infinite coordinates in {values!r}")
    return numbers


def _check_finite(geometry, index: int) -> None:
    coords = shapely.get_coordinates(geometry)
    if coords.size and not np.isfinite(coords).all():
        raise MalformedModelOutput(f"features[{index}] has NaN or infinite coordinates")


def to_image_pixels(features: Iterable[dict], col: int, row: int, inference_time: str) -> list[dict]:
    """Shift tile-pixel geometries to full-image pixels (spec 4.1); returns new feature dicts."""
    shifted = []
    for feature in features:
        properties = dict(feature["properties"])
        if properties.get("imageBBox") is not None:
            minx, miny, maxx, maxy = _four_numbers(properties["imageBBox"])
            properties["imageBBox"] = [minx + col, miny + row, maxx + col, maxy + row]
        if properties.get("imageGeometry") is not None:
            moved = shapely.transform(shape(properties["imageGeometry"]), lambda xy: xy + (col, row))
            properties["imageGeometry"] = _rounded_mapping(moved)
        properties["inferenceTime"] = inference_time
        shifted.append({**feature, "properties": properties})
    return shifted


def _rounded_mapping(geometry) -> dict:
    # 6 decimals, as osml's geojson round trip does; also hides float noise like 515.4297000000001.
    return mapping(shapely.transform(geometry, lambda xy: np.round(xy, 6)))


def image_bbox(feature: dict) -> tuple[float, float, float, float]:
    """The pixel bounds osml uses for NMS: of imageGeometry if present, else imageBBox (spec 4.5)."""
    properties = feature["properties"]
    if properties.get("imageGeometry") is not None:
        return tuple(shape(properties["imageGeometry"]).bounds)
    return tuple(_four_numbers(properties["imageBBox"]))


def is_truncated_copy(
    bbox: Sequence[float],
    tile: Sequence[int],
    tiles: np.ndarray,
    bounds: Sequence[int],
) -> bool:
    """True when a detection is cut by an inner edge of its tile and another tile sees it whole.

    ``tile`` and every row of ``tiles`` are ``[col, row, width, height]``; ``bounds`` is the processing
    area ``[minx, miny, maxx, maxy]``. The whole copy is kept by that other tile, so dropping this one
    removes the seam duplicate that IoU-based NMS misses (osml keeps it whenever IoU <= threshold).
    """
    if not _touches_inner_edge(bbox, np.asarray([tile]), bounds)[0]:
        return False
    minx, miny, maxx, maxy = bbox
    tol = EDGE_TOLERANCE
    left, top = tiles[:, 0], tiles[:, 1]
    right, bottom = left + tiles[:, 2], top + tiles[:, 3]
    contains = (left <= minx + tol) & (top <= miny + tol) & (right >= maxx - tol) & (bottom >= maxy - tol)
    return bool((contains & ~_touches_inner_edge(bbox, tiles, bounds)).any())


def _touches_inner_edge(bbox: Sequence[float], tiles: np.ndarray, bounds: Sequence[int]) -> np.ndarray:
    minx, miny, maxx, maxy = bbox
    tol = EDGE_TOLERANCE
    left, top = tiles[:, 0], tiles[:, 1]
    right, bottom = left + tiles[:, 2], top + tiles[:, 3]
    return (
        ((minx <= left + tol) & (left > bounds[0]))
        | ((miny <= top + tol) & (top > bounds[1]))
        | ((maxx >= right - tol) & (right < bounds[2]))
        | ((maxy >= bottom - tol) & (bottom < bounds[3]))
    )


def geolocate_tile_features(features: list[dict], sensor_model, elevation_model=None) -> None:
    """Geolocate one tile's features in place with ONE Geolocator call, exactly as osml does.

    The toolkit interpolates over an 11x11 grid covering the features it is given, so batching per tile
    is what reproduces the published outputs bit for bit.
    """
    if not features or sensor_model is None:
        return
    from aws.osml.features import Geolocator, ImagedFeaturePropertyAccessor

    geolocator = Geolocator(ImagedFeaturePropertyAccessor(), sensor_model, elevation_model=elevation_model)
    # The toolkit wants geojson.Feature objects; they share our properties dicts, so centres land in place.
    located = [geojson.Feature(geometry=f.get("geometry"), properties=f["properties"]) for f in features]
    # osml-imagery-toolkit 1.5.0 prints debugging lines to stdout for points and collections
    with contextlib.redirect_stdout(io.StringIO()):
        geolocator.geolocate_features(located)
    for feature, result in zip(features, located, strict=True):
        if result.get("bbox") is not None:
            feature["bbox"] = [float(v) for v in result["bbox"]]
        if result.get("geometry") is not None:
            feature["geometry"] = _plain_geometry(result["geometry"])


def _plain_geometry(geometry) -> dict:
    # geojson objects are dict subclasses with rounding behaviour; keep plain JSON types downstream
    return {"type": geometry["type"], "coordinates": _plain(geometry["coordinates"])}


def _plain(value):
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return float(value)


def apply_output_properties(
    features: Iterable[dict],
    *,
    job_id: str,
    feature_properties: Sequence[dict] = (),
    source_metadata: dict | None = None,
) -> Iterable[dict]:
    """Add ``inferenceMetadata``, request ``featureProperties`` and NITF ``sourceMetadata`` (spec 4.4)."""
    extra = list(feature_properties)
    if source_metadata is not None:
        extra.append({"sourceMetadata": [source_metadata]})
    for feature in features:
        properties = feature["properties"]
        properties["inferenceMetadata"] = {
            "jobId": job_id,
            "inferenceDT": properties.get("inferenceTime") or utc_timestamp(),
        }
        for entry in extra:
            properties.update(entry)  # shallow merge, later entries win, as upstream
        for key in _DROPPED_PROPERTIES:
            properties.pop(key, None)
        yield feature
