"""Feature centres against independent truth: rasterio's own transform, then PROJ to WGS84."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery

SIZE = 600


@pytest.mark.parametrize(
    ("crs", "origin", "pixel"),
    [
        pytest.param("EPSG:32633", (500_000.0, 5_300_000.0), 0.5, id="utm-33n"),
        pytest.param("EPSG:3857", (1_669_792.0, 6_106_854.0), 0.6, id="web-mercator"),
        pytest.param("EPSG:4326", (15.0, 47.8), 5e-6, id="geographic"),
        pytest.param("EPSG:32718", (300_000.0, 8_000_000.0), 2.0, id="utm-18s"),
    ],
)
def test_feature_centres_match_rasterio_and_proj(tmp_path, crs, origin, pixel):
    path = tmp_path / "scene.tif"
    transform = from_origin(*origin, pixel, pixel)
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8",
                       crs=crs, transform=transform) as dataset:
        dataset.write(np.zeros((1, SIZE, SIZE), dtype=np.uint8))
    rng = np.random.default_rng(7)
    boxes = []
    for x, y in rng.uniform(5, SIZE - 25, size=(12, 2)):
        w, h = rng.uniform(3, 20, size=2)
        boxes.append([float(x), float(y), float(x + w), float(y + h)])
    # half the features are boxes only (osml sets no geometry for them), half carry a polygon too
    features = [
        {"type": "Feature", "geometry": None,
         "properties": {"imageBBox": b, **({"imageGeometry": _polygon(b)} if i % 2 else {})}}
        for i, b in enumerate(boxes)
    ]

    with imagery.open_image(str(path)) as dataset:
        model = imagery.build_sensor_model(dataset)
        to_wgs84 = Transformer.from_crs(dataset.crs, "EPSG:4326", always_xy=True)
        truth_transform = dataset.transform
    feats.geolocate_tile_features(features, model)

    for feature, (minx, miny, maxx, maxy) in zip(features, boxes, strict=True):
        # pixel coordinates are continuous: (0, 0) is the outer corner of the first pixel, as in GDAL
        east, north = truth_transform @ ((minx + maxx) / 2, (miny + maxy) / 2)
        lon, lat = to_wgs84.transform(east, north)
        props = feature["properties"]
        assert props["center_longitude"] == pytest.approx(lon, abs=1e-7)
        assert props["center_latitude"] == pytest.approx(lat, abs=1e-7)
        outline = _polygon(props["imageBBox"])["coordinates"][0]
        corners = [to_wgs84.transform(*(truth_transform @ (x, y))) for x, y in outline]
        lons, lats = zip(*corners, strict=True)
        np.testing.assert_allclose(feature["bbox"], [min(lons), min(lats), max(lons), max(lats)], atol=1e-7, rtol=0)
        if "imageGeometry" in props:
            ring = np.asarray(feature["geometry"]["coordinates"][0])
            # geometry is written at 6 decimals, as osml's geojson does (the goldens depend on it)
            np.testing.assert_allclose(ring[:, :2], corners, atol=5e-7 + 1e-7, rtol=0)
            assert feature["geometry"]["type"] == "Polygon"
        else:
            assert feature["geometry"] is None  # as osml: imageBBox alone gives bbox and centre only


def _polygon(bbox) -> dict:
    minx, miny, maxx, maxy = bbox
    return {"type": "Polygon", "coordinates": [[[minx, miny], [maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny]]]}
