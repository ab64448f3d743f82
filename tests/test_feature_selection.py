"""``select_features``' streaming passes give what the former in-memory path gave, on a work store sample."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from airflow_provider_osml.operators import feature_selection as fs
from airflow_provider_osml.request import FeatureDistillation


def sample_regions(seed: int = 5, regions: int = 3, per_region: int = 300) -> list[dict]:
    """Region outputs with near-duplicates across regions, several classes, tied scores and polygons."""
    rng = np.random.default_rng(seed)
    stored = []
    for index in range(regions):
        features = []
        for k in range(per_region):
            x, y = rng.uniform(0, 800, 2).round(1)
            w, h = rng.uniform(5, 40, 2).round(1)
            if k % 3 == 0 and index:  # a shifted copy of an earlier region's feature
                source = stored[-1]["features"][int(rng.integers(0, per_region))]["properties"]["imageBBox"]
                x, y = source[0] + rng.uniform(-3, 3), source[1] + rng.uniform(-3, 3)
                w, h = source[2] - source[0], source[3] - source[1]
            iri = ["boat", "car", "plane"][int(rng.integers(0, 3))]
            score = float(rng.choice([0.5, 0.9, rng.uniform(0.1, 1.0)]))
            bbox = [float(x), float(y), float(x + w), float(y + h)]
            properties = {"imageBBox": bbox, "featureClasses": [{"iri": iri, "score": score}], "n": [index, k]}
            if k % 2:
                ring = [[bbox[0], bbox[1]], [bbox[2], bbox[1]], [bbox[0], bbox[3]], [bbox[0], bbox[1]]]  # triangle
                properties["imageGeometry"] = {"type": "Polygon", "coordinates": [ring]}
            features.append({"type": "Feature", "geometry": None, "properties": properties})
        stored.append({"features": features, "failedTiles": [{"window": [index, 0, 1, 1], "error": "x"}]})
    return stored


class DictStore:
    """Counts reads, to show each region is read once per pass."""

    def __init__(self, files: dict[str, dict]) -> None:
        self.files = {k: json.dumps(v) for k, v in files.items()}
        self.reads: list[str] = []

    def read_json(self, name: str):
        self.reads.append(name)
        return json.loads(self.files[name])


def canonical(features: list[dict]) -> list[str]:
    return sorted(json.dumps(f, sort_keys=True) for f in features)


@pytest.mark.parametrize(
    "algorithm",
    [
        FeatureDistillation("NMS", iou_threshold=0.3),
        FeatureDistillation("NMS", iou_threshold=0.3, polygon_iou=True),
        FeatureDistillation("SOFT_NMS", sigma=0.1, skip_box_threshold=0.05),
        FeatureDistillation("NONE"),
    ],
    ids=["nms", "nms-polygon", "soft_nms", "none"],
)
def test_streaming_selection_equals_the_in_memory_path(algorithm):
    regions = sample_regions()
    keys = [f"geolocated/r{i}.json" for i in range(len(regions))]
    store = DictStore(dict(zip(keys, regions, strict=True)))

    scan = fs.scan_regions(store, keys, polygons=algorithm.polygon_iou)
    chosen = fs.choose(scan, algorithm, tiles=np.empty((0, 4)))
    streamed = list(fs.iter_selected(store, keys, scan, chosen))

    everything = [copy.deepcopy(f) for region in regions for f in region["features"]]
    expected = fs.distill(everything, algorithm)
    assert canonical(streamed) == canonical(expected)
    assert scan.failed_tiles == [t for region in regions for t in region["failedTiles"]]
    assert store.reads == keys + keys  # one read per region per pass
    if algorithm.algorithm_type != "NONE":
        assert 0 < len(streamed) < len(everything)
    if algorithm.algorithm_type == "SOFT_NMS":
        decayed = [f for f in streamed if "rawScore" in f["properties"]["featureClasses"][0]]
        assert any(c["score"] < c["rawScore"] for f in decayed for c in f["properties"]["featureClasses"])


def test_scan_keeps_arrays_not_feature_dicts():
    regions = sample_regions(regions=2, per_region=50)
    keys = ["a.json", "b.json"]
    scan = fs.scan_regions(DictStore(dict(zip(keys, regions, strict=True))), keys)
    assert scan.boxes.shape == (100, 4) and scan.boxes.dtype == np.float64
    assert scan.region.tolist() == [0] * 50 + [1] * 50
    assert scan.offset.tolist() == list(range(50)) * 2
    assert scan.fragments == {} and scan.polygons is None
    # bounds read straight from the ring match the shapely bounds the old path used
    flat = [f for r in regions for f in r["features"]]
    assert scan.boxes.tolist() == [list(fs.feats.image_bbox(f)) for f in flat]
