from __future__ import annotations

import math

import numpy as np
import pytest

from airflow_provider_osml import features as feats


def legacy_feature(bounds):
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [0.0, 0.0]},
        "id": "abc",
        "properties": {
            "bounds_imcoords": bounds,
            "detection_score": 0.0,
            "feature_types": {"sample_object": 1.0},
            "image_id": "x",
        },
    }


def test_legacy_properties_become_feature_classes_and_box_ring_in_osml_order():
    [feature] = feats.normalize_model_output({"features": [legacy_feature([204.8, 204.8, 307.2, 307.2])]})
    props = feature["properties"]
    assert props["featureClasses"] == [{"iri": "sample_object", "score": 1.0}]
    # the ring order the goldens compare exactly: [maxx,miny],[maxx,maxy],[minx,maxy],[minx,miny],[maxx,miny]
    ring = [list(p) for p in props["imageGeometry"]["coordinates"][0]]
    assert ring == [[307.2, 204.8], [307.2, 307.2], [204.8, 307.2], [204.8, 204.8], [307.2, 204.8]]
    assert props["imageBBox"] == [204.8, 204.8, 307.2, 307.2]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        pytest.param("not json", "FeatureCollection", id="string"),
        pytest.param({"type": "FeatureCollection"}, "features", id="no-features"),
        pytest.param({"features": [42]}, "features\\[0\\]", id="feature-not-object"),
        pytest.param({"features": [{"properties": {}}]}, "no image geometry", id="no-geometry"),
        pytest.param({"features": [{"properties": {"imageBBox": [1, 2, 3]}}]}, "invalid image geometry", id="short-bbox"),
        pytest.param({"features": [{"properties": {"imageBBox": [1, 2, float("nan"), 4]}}]}, "NaN", id="nan"),
        pytest.param(
            {"features": [{"properties": {"imageGeometry": {"type": "Polygon", "coordinates": "x"}}}]},
            "invalid image geometry",
            id="bad-polygon",
        ),
    ],
)
def test_malformed_model_output_is_a_clear_error(payload, reason):
    with pytest.raises(feats.MalformedModelOutput, match=reason):
        feats.normalize_model_output(payload)


def test_tile_to_image_pixels_shifts_box_and_geometry():
    feature = {
        "type": "Feature",
        "geometry": None,
        "properties": {
            "imageBBox": [1.0, 2.0, 3.0, 4.0],
            "imageGeometry": {"type": "Polygon", "coordinates": [[[1, 2], [3, 2], [3, 4], [1, 2]]]},
        },
    }
    [moved] = feats.to_image_pixels([feature], 256, 512, "2024-01-01T00:00:00Z")
    assert moved["properties"]["imageBBox"] == [257.0, 514.0, 259.0, 516.0]
    assert [list(p) for p in moved["properties"]["imageGeometry"]["coordinates"][0]][:2] == [[257, 514], [259, 514]]
    assert feature["properties"]["imageBBox"] == [1.0, 2.0, 3.0, 4.0]  # input untouched


TILES = np.array([[0, 0, 512, 512], [384, 0, 512, 512], [0, 384, 512, 512], [384, 384, 512, 512]], dtype=float)
BOUNDS = (0, 0, 896, 896)


@pytest.mark.parametrize(
    ("bbox", "tile", "truncated"),
    [
        pytest.param((490, 100, 512, 120), TILES[0], True, id="cut-by-right-edge-whole-in-neighbour"),
        pytest.param((100, 490, 120, 512), TILES[0], True, id="cut-by-bottom-edge-whole-in-neighbour"),
        pytest.param((384, 100, 400, 120), TILES[1], True, id="cut-by-left-edge-whole-in-neighbour"),
        pytest.param((400, 100, 440, 120), TILES[0], False, id="inside-the-overlap-not-touching"),
        pytest.param((300, 100, 512, 120), TILES[0], False, id="larger-than-overlap"),
        pytest.param((880, 100, 896, 120), TILES[1], False, id="image-border-is-not-a-seam"),
    ],
)
def test_truncated_copies(bbox, tile, truncated):
    assert feats.is_truncated_copy(bbox, tile, TILES, BOUNDS) is truncated


def test_output_properties_follow_osml_and_always_drop_internal_keys():
    feature = feats.normalize_model_output({"features": [legacy_feature([1, 1, 2, 2])]})[0]
    feature["properties"]["inferenceTime"] = "2024-09-10T18:32:00Z"
    [out] = feats.apply_output_properties(
        [feature],
        job_id="job-1",
        feature_properties=[{"modelMetadata": {"modelName": "m"}}],
        source_metadata={"format": "NITF"},
    )
    props = out["properties"]
    assert props["inferenceMetadata"] == {"jobId": "job-1", "inferenceDT": "2024-09-10T18:32:00Z"}
    assert props["modelMetadata"] == {"modelName": "m"}
    assert props["sourceMetadata"] == [{"format": "NITF"}]
    # detection_score 0.0 leaked upstream (spec 11 Q16)
    for key in ("detection_score", "bounds_imcoords", "feature_types", "image_id", "inferenceTime"):
        assert key not in props


def test_geolocation_matches_the_sensor_model(fixtures_dir):
    from aws.osml.photogrammetry import ImageCoordinate

    from airflow_provider_osml import imagery

    with imagery.open_image(str(fixtures_dir / "meta.ntf")) as dataset:
        model = imagery.build_sensor_model(dataset)
    feature = {"type": "Feature", "geometry": None, "properties": {"imageBBox": [200.0, 300.0, 240.0, 320.0]}}
    feats.geolocate_tile_features([feature], model)
    world = model.image_to_world(ImageCoordinate([220.0, 310.0]))
    assert math.isclose(feature["properties"]["center_longitude"], math.degrees(world.longitude), abs_tol=1e-9)
    assert math.isclose(feature["properties"]["center_latitude"], math.degrees(world.latitude), abs_tol=1e-9)
    assert len(feature["bbox"]) == 4
