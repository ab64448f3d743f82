"""The blobs model: a real threshold + connected-components detector with exact pixel geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import MultiPoint, Polygon

from airflow_provider_osml.models import BlobsModel, encode_tile
from airflow_provider_osml.models.blobs import otsu_threshold
from airflow_provider_osml.models.server import CUSTOM_ATTRIBUTES_HEADER

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

METADATA = {"modelName": "blobs", "ontologyName": "blobs", "ontologyVersion": "1.0.0"}


def scene(dtype: str = "uint8", background: float = 20, value: float = 200) -> tuple[np.ndarray, dict]:
    """A 512x512 tile with known objects; returns it and {bbox: pixel mask} of the expected detections."""
    image = np.full((1, 512, 512), background, dtype=dtype)
    yy, xx = np.mgrid[0:512, 0:512]
    masks = {
        (30, 10, 50, 20): (yy >= 10) & (yy < 20) & (xx >= 30) & (xx < 50),  # rectangle
        (200, 100, 261, 105): (yy >= 100) & (yy < 105) & (xx >= 200) & (xx < 261),  # thin bar
        (288, 288, 313, 313): (xx - 300) ** 2 + (yy - 300) ** 2 <= 144,  # disc, radius 12
        (0, 0, 8, 6): (yy < 6) & (xx < 8),  # touches the top-left corner
        (500, 50, 512, 60): (yy >= 50) & (yy < 60) & (xx >= 500),  # cut by the right edge
        (100, 507, 140, 512): (yy >= 507) & (xx >= 100) & (xx < 140),  # cut by the bottom edge
    }
    for mask in masks.values():
        image[0][mask] = value
    image[0, 400, 400:403] = value  # 3 pixels: below the default min_area of 4
    return image, masks


def pixel_hull(mask: np.ndarray) -> Polygon:
    """Reference: convex hull of every corner of every pixel."""
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.column_stack((xs + dx, ys + dy)) for dx in (0, 1) for dy in (0, 1)])
    return MultiPoint(corners).convex_hull


def by_bbox(result: dict) -> dict[tuple, dict]:
    assert result["type"] == "FeatureCollection"
    return {tuple(f["properties"]["imageBBox"]): f for f in result["features"]}


def check_features(result: dict, masks: dict, score: float, iri: str = "bright_object") -> None:
    found = by_bbox(result)
    assert set(found) == set(masks)
    assert len({f["id"] for f in result["features"]}) == len(masks)
    for bbox, feature in found.items():
        assert feature["geometry"] is None
        props = feature["properties"]
        assert props["featureClasses"] == [{"iri": iri, "score": score}]
        assert props["modelMetadata"] == METADATA
        assert props["imageGeometry"]["type"] == "Polygon"
        ring = props["imageGeometry"]["coordinates"][0]
        assert ring[0] == ring[-1]
        polygon = Polygon(ring)
        assert polygon.exterior.is_ccw
        assert polygon.equals(pixel_hull(masks[bbox])), bbox


def test_known_objects_with_otsu():
    image, masks = scene()
    check_features(BlobsModel()(image, {}), masks, round(200 / 255, 4))


def test_known_objects_with_fixed_threshold_and_rectangle_ring():
    image, masks = scene()
    found = by_bbox(BlobsModel(threshold=100)(image, {}))
    assert set(found) == set(masks)
    ring = found[(30, 10, 50, 20)]["properties"]["imageGeometry"]["coordinates"][0]
    assert sorted(map(tuple, ring[:-1])) == [(30, 10), (30, 20), (50, 10), (50, 20)]


def test_single_pixel_bbox_uses_pixel_edges():
    image = np.zeros((1, 16, 16), dtype=np.uint8)
    image[0, 4, 3] = 255
    (feature,) = BlobsModel(min_area=1)(image, {})["features"]
    assert feature["properties"]["imageBBox"] == [3, 4, 4, 5]
    ring = feature["properties"]["imageGeometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    assert sorted(map(tuple, ring[:-1])) == [(3, 4), (3, 5), (4, 4), (4, 5)]
    assert feature["properties"]["featureClasses"][0]["score"] == 1.0


def test_min_area_and_eight_connectivity():
    image = np.zeros((1, 20, 20), dtype=np.uint8)
    image[0, 2:4, 2:4] = 200  # two 2x2 squares touching diagonally: one 8-connected object
    image[0, 4:6, 4:6] = 200
    image[0, 10, 10:13] = 200  # 3 pixels
    assert [f["properties"]["imageBBox"] for f in BlobsModel()(image, {})["features"]] == [[2, 2, 6, 6]]
    assert len(BlobsModel(min_area=3)(image, {})["features"]) == 2
    assert len(BlobsModel()(image, {"min_area": "9"})["features"]) == 0


@pytest.mark.parametrize(
    "image",
    [
        np.full((1, 64, 64), 77, dtype=np.uint8),
        np.zeros((1, 64, 64), dtype=np.uint16),
        np.full((3, 64, 64), 0.5, dtype=np.float32),
    ],
    ids=["uint8", "uint16-zero", "float-3band"],
)
def test_uniform_tile_gives_no_features(image):
    assert BlobsModel()(image, {}) == {"type": "FeatureCollection", "features": []}


def test_nearly_uniform_tile_gives_no_features():
    image = np.full((1, 64, 64), 0.5, dtype=np.float64)
    image[0, 10:20, 10:20] += 1e-9
    assert BlobsModel()(image, {})["features"] == []
    assert otsu_threshold(image[0], 1.0) is None


def test_otsu_splits_two_levels():
    image, _ = scene()
    threshold = otsu_threshold(image[0].astype(float), 255.0)
    assert 20 < threshold < 200


def test_16_bit_input():
    image, masks = scene("uint16", background=1000, value=40000)
    check_features(BlobsModel()(image, {}), masks, round(40000 / 65535, 4))


def test_float_input_scores_against_one():
    image, masks = scene("float32", background=0.1, value=0.9)
    check_features(BlobsModel()(image, {}), masks, 0.9)


def test_multi_band_input_uses_band_mean():
    image = np.zeros((3, 64, 64), dtype=np.uint8)
    image[:, 5:10, 5:10] = 210  # grey object: mean 210
    image[0, 30:40, 30:40] = 255  # red only: mean 85
    image[1, 50:52, 2:6] = 150  # green only: mean 50
    found = by_bbox(BlobsModel(threshold=40)(image, {}))
    assert set(found) == {(5, 5, 10, 10), (30, 30, 40, 40), (2, 50, 6, 52)}
    assert found[(30, 30, 40, 40)]["properties"]["featureClasses"][0]["score"] == round(85 / 255, 4)
    assert set(by_bbox(BlobsModel(threshold=60)(image, {}))) == {(5, 5, 10, 10), (30, 30, 40, 40)}


def test_many_blobs():
    image = np.zeros((1, 512, 512), dtype=np.uint8)
    for y in range(10):
        for x in range(10):
            image[0, 10 + 50 * y : 14 + 50 * y, 10 + 50 * x : 14 + 50 * x] = 180
    features = BlobsModel()(image, {})["features"]
    assert len(features) == 100
    assert features[0]["properties"]["imageBBox"] == [10, 10, 14, 14]
    assert features[-1]["properties"]["imageBBox"] == [460, 460, 464, 464]


def test_deterministic_output():
    image, _ = scene()
    assert BlobsModel()(image, {}) == BlobsModel()(image.copy(), {})


@pytest.mark.parametrize("driver", ["PNG", "NITF", "GTiff"])
def test_blobs_over_http_exact(start_server, fetch, driver):
    image, masks = scene()
    server = start_server(BlobsModel())
    rgb = np.repeat(image, 3, axis=0) if driver == "PNG" else image
    status, headers, body = fetch(server.url, body=encode_tile(rgb, driver))
    assert status == 200 and headers["Content-Type"] == "application/json"
    check_features(json.loads(body), masks, round(200 / 255, 4))


def test_blobs_over_http_jpeg_and_options(start_server, fetch):
    image, masks = scene()
    server = start_server(BlobsModel())
    status, _, body = fetch(server.url, body=encode_tile(image, "JPEG", quality=95))
    assert status == 200
    assert len(json.loads(body)["features"]) == len(masks)  # lossy: count only
    headers = {CUSTOM_ATTRIBUTES_HEADER: "threshold=100,min_area=3,iri=vehicle"}
    status, _, body = fetch(server.url, body=encode_tile(image, "GTiff"), headers=headers)
    features = json.loads(body)["features"]
    assert len(features) == len(masks) + 1  # the 3-pixel object is kept now
    assert {f["properties"]["featureClasses"][0]["iri"] for f in features} == {"vehicle"}
