"""The centerpoint model: exact outputs of both generations and the published golden files."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from airflow_provider_osml.models import CenterpointModel, decode_tile, encode_tile
from airflow_provider_osml.models.server import CUSTOM_ATTRIBUTES_HEADER

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

HEX32 = re.compile(r"^[0-9a-f]{32}$")
METADATA = {"modelName": "centerpoint", "ontologyName": "centerpoint", "ontologyVersion": "1.0.0"}
# osml-ecosystem spec 3.3 / golden-head: the 512x512 hexagon.
HEXAGON_512 = [
    [281.6, 307.2],
    [259.4297, 294.4],
    [259.4297, 268.8],
    [281.6, 256.0],
    [303.7703, 268.8],
    [303.7703, 294.4],
    [281.6, 307.2],
    [281.6, 307.2],
]
# Worked by hand for w=300, h=200, p=0.1: x' = (x+1)/2*30 + 150, y' = (y+1)/2*20 + 100.
HEXAGON_300x200 = [
    [165.0, 120.0],
    [152.0096, 115.0],
    [152.0096, 105.0],
    [165.0, 100.0],
    [177.9904, 105.0],
    [177.9904, 115.0],
    [165.0, 120.0],
    [165.0, 120.0],
]


def blank(width: int, height: int, bands: int = 1) -> np.ndarray:
    return np.zeros((bands, height, width), dtype=np.uint8)


def only_feature(result: dict) -> dict:
    assert result["type"] == "FeatureCollection"
    assert len(result["features"]) == 1
    feature = result["features"][0]
    assert HEX32.match(feature["id"])
    assert HEX32.match(feature["properties"]["image_id"])
    return feature


def test_legacy_output_512():
    feature = only_feature(CenterpointModel()(blank(512, 512), {}))
    assert list(feature) == ["type", "geometry", "id", "properties"]
    assert feature["geometry"] == {"coordinates": [0.0, 0.0], "type": "Point"}
    props = dict(feature["properties"])
    props.pop("image_id")
    assert props == {
        "bounds_imcoords": [204.8, 204.8, 307.2, 307.2],
        "detection_score": 1.0,
        "feature_types": {"sample_object": 1.0},
    }


def test_segmentation_output_512():
    feature = only_feature(CenterpointModel(segmentation=True)(blank(512, 512), {}))
    assert feature["type"] == "Feature"
    assert feature["geometry"] is None
    props = dict(feature["properties"])
    props.pop("image_id")
    assert props == {
        "imageGeometry": {"type": "Polygon", "coordinates": [HEXAGON_512]},
        "imageBBox": [204.8, 204.8, 307.2, 307.2],
        "featureClasses": [{"iri": "sample_object", "score": 1.0}],
        "modelMetadata": METADATA,
    }


def test_odd_sized_tile_both_generations():
    image = blank(300, 200, bands=3)
    legacy = only_feature(CenterpointModel()(image, {}))
    assert legacy["properties"]["bounds_imcoords"] == [120.0, 80.0, 180.0, 120.0]
    new = only_feature(CenterpointModel(segmentation=True)(image, {}))
    assert new["properties"]["imageBBox"] == [120.0, 80.0, 180.0, 120.0]
    assert new["properties"]["imageGeometry"]["coordinates"] == [HEXAGON_300x200]


def test_non_round_sizes_follow_the_reference_formula():
    w, h, p = 301, 199, 0.1
    props = only_feature(CenterpointModel(segmentation=True)(blank(w, h), {}))["properties"]
    assert props["imageBBox"] == [w / 2 - w * p, h / 2 - h * p, w / 2 + w * p, h / 2 + h * p]
    ring = props["imageGeometry"]["coordinates"][0]
    assert len(ring) == 8 and ring[0] == ring[-1] == ring[-2]
    assert ring[0] == [round(w / 2 + p * w / 2, 4), round(h / 2 + p * h, 4)]  # top vertex (0, 1)


def test_options_override_constructor_defaults():
    model = CenterpointModel(bbox_percentage=0.1, segmentation=False)
    feature = only_feature(model(blank(100, 100), {"segmentation": "True", "bbox_percentage": "0.2"}))
    assert feature["properties"]["imageBBox"] == [30.0, 30.0, 70.0, 70.0]
    feature = only_feature(CenterpointModel(segmentation=True)(blank(100, 100), {"segmentation": "false"}))
    assert feature["properties"]["bounds_imcoords"] == [40.0, 40.0, 60.0, 60.0]
    with pytest.raises(ValueError):
        model(blank(10, 10), {"segmentation": "maybe"})


def test_output_is_deterministic_and_ids_differ_between_tiles():
    model = CenterpointModel(segmentation=True)
    a = model(blank(64, 64), {})
    assert a == model(blank(64, 64), {})
    other = blank(64, 64)
    other[0, 0, 0] = 1
    assert model(other, {})["features"][0]["id"] != a["features"][0]["id"]


def meta_tiles(reference_dir):
    """meta.ntf (1024x1024) cut as the goldens were produced: 512 px tiles at 0, 256, 512, sent as GTiff."""
    image = decode_tile((reference_dir / "meta.ntf").read_bytes())
    assert image.shape == (1, 1024, 1024)
    for y in (0, 256, 512):
        for x in (0, 256, 512):
            yield x, y, encode_tile(image[:, y : y + 512, x : x + 512], "GTiff")


def golden(reference_dir, generation: str) -> list[dict]:
    path = reference_dir / f"golden-{generation}" / "centerpoint.meta.ntf.geojson"
    features = json.loads(path.read_text())["features"]
    assert len(features) == 9
    return sorted(features, key=lambda f: str(f["properties"]["imageGeometry"]))


def test_golden_head_segmentation(reference_dir, start_server, fetch):
    server = start_server(CenterpointModel(segmentation=True))
    produced = []
    for x, y, payload in meta_tiles(reference_dir):
        status, _, body = fetch(server.url, body=payload)
        assert status == 200
        props = only_feature(json.loads(body))["properties"]
        ring = [[px + x, py + y] for px, py in props["imageGeometry"]["coordinates"][0]]
        minx, miny, maxx, maxy = props["imageBBox"]
        produced.append(
            {
                "imageGeometry": {"type": "Polygon", "coordinates": [ring]},
                "imageBBox": [minx + x, miny + y, maxx + x, maxy + y],
                "featureClasses": props["featureClasses"],
                "modelMetadata": props["modelMetadata"],
            }
        )
    produced.sort(key=lambda p: str(p["imageGeometry"]))
    for mine, theirs in zip(produced, golden(reference_dir, "head"), strict=True):
        expected = {key: theirs["properties"][key] for key in mine}
        assert mine == expected  # exact floats, no rounding


def test_golden_v210_legacy_bounds(reference_dir, start_server, fetch):
    server = start_server(CenterpointModel())
    produced = []
    for x, y, payload in meta_tiles(reference_dir):
        status, _, body = fetch(server.url, body=payload)
        assert status == 200
        props = only_feature(json.loads(body))["properties"]
        minx, miny, maxx, maxy = props["bounds_imcoords"]
        minx, miny, maxx, maxy = minx + x, miny + y, maxx + x, maxy + y
        # What the runner builds from bounds_imcoords / feature_types (ring order as in the goldens).
        ring = [[maxx, miny], [maxx, maxy], [minx, maxy], [minx, miny], [maxx, miny]]
        classes = [{"iri": iri, "score": score} for iri, score in props["feature_types"].items()]
        produced.append(
            {"imageGeometry": {"type": "Polygon", "coordinates": [ring]}, "featureClasses": classes}
        )
    produced.sort(key=lambda p: str(p["imageGeometry"]))
    for mine, theirs in zip(produced, golden(reference_dir, "v2.1.0"), strict=True):
        expected = {key: theirs["properties"][key] for key in mine}
        assert mine == expected


def test_custom_attributes_switch_generation_over_http(start_server, fetch):
    server = start_server(CenterpointModel())
    payload = encode_tile(blank(512, 512), "PNG")
    status, _, body = fetch(server.url, body=payload, headers={CUSTOM_ATTRIBUTES_HEADER: "segmentation=true"})
    assert status == 200
    assert only_feature(json.loads(body))["properties"]["imageGeometry"]["coordinates"] == [HEXAGON_512]
    status, _, body = fetch(server.url, body=payload)
    assert "bounds_imcoords" in only_feature(json.loads(body))["properties"]
