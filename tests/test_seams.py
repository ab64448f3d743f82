"""Objects cut by tile seams, through the real task bodies and the ``blobs`` detector over a generated scene:
every object once, whether a tile sees it whole, truncated, or (larger than the overlap) only in parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from airflow_provider_osml import seams
from airflow_provider_osml.tiling import plan_image

WIDTH, HEIGHT, TILE, OVERLAP, REGION = 1400, 1100, 512, 64, 1024


def seam_lines(starts_ends: set[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """(start of the next tile, end of the previous one): the overlap strips along one axis."""
    starts = sorted({s for s, _ in starts_ends if s > 0})
    ends = sorted({e for _, e in starts_ends if e < size})
    return list(zip(starts, ends, strict=True))


def scene_objects() -> list[tuple[int, int, int, int]]:
    """Rectangles [x0, y0, x1, y1) on and across the seams: inside an overlap strip, across one tile edge,
    across a whole strip (longer than the overlap: no tile sees it whole) and over strip crossings."""
    plan = plan_image(WIDTH, HEIGHT, tile_size=TILE, tile_overlap=OVERLAP, region_size=REGION)
    tiles = list(plan.all_tiles())
    xs = seam_lines({(c, c + w) for (_, c), (w, _) in tiles}, WIDTH)
    ys = seam_lines({(r, r + h) for (r, _), (_, h) in tiles}, HEIGHT)
    # rows and columns of object centres away from the other axis' strips
    free_y = [y for y in range(70, HEIGHT - 70, 90) if all(y < s - 60 or y > e + 60 for s, e in ys)]
    free_x = [x for x in range(70, WIDTH - 70, 90) if all(x < s - 60 or x > e + 60 for s, e in xs)]
    objects = []
    for s, e in xs:
        for k, y in enumerate(free_y):
            cx = [(s + e) // 2, e, s, (s + e) // 2][k % 4]  # inside the strip, across an edge, ..., across both
            half_w, half_h = [(10, 10), (12, 9), (9, 12), (50 + 8 * (k % 3), 8)][k % 4]
            objects.append((cx - half_w, y - half_h, cx + half_w, y + half_h))
    for s, e in ys:
        for k, x in enumerate(free_x):
            cy = [(s + e) // 2, e, s, (s + e) // 2][k % 4]
            half_w, half_h = [(10, 10), (9, 12), (12, 9), (8, 50 + 8 * (k % 3))][k % 4]
            objects.append((x - half_w, cy - half_h, x + half_w, cy + half_h))
    for sx, ex in xs:
        for sy, ey in ys:  # larger than the overlap both ways: four tiles see four parts
            cx, cy = (sx + ex) // 2, (sy + ey) // 2
            objects.append((cx - 55, cy - 55, cx + 55, cy + 55))
    return objects


def write_scene(path: Path, objects) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(10, 50, size=(3, HEIGHT, WIDTH), dtype=np.uint8)
    for x0, y0, x1, y1 in objects:
        pixels[:, y0:y1, x0:x1] = 210
    profile = {
        "driver": "GTiff", "width": WIDTH, "height": HEIGHT, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000.0, 5300000.0, 0.5, 0.5),
        "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels)


def test_scene_objects_are_apart_and_some_are_larger_than_the_overlap():
    objects = np.array(scene_objects())
    assert len(objects) >= 30
    assert ((objects[:, 2] - objects[:, 0]) > OVERLAP).sum() >= 5
    assert ((objects[:, 3] - objects[:, 1]) > OVERLAP).sum() >= 5
    for k, (x0, y0, x1, y1) in enumerate(objects):
        others = np.delete(objects, k, axis=0)
        apart = (others[:, 0] > x1 + 4) | (others[:, 2] < x0 - 4) | (others[:, 1] > y1 + 4) | (others[:, 3] < y0 - 4)
        assert apart.all()
        assert 4 < x0 and x1 < WIDTH - 4 and 4 < y0 and y1 < HEIGHT - 4


def run_job(tmp_path: Path, scene: Path, url: str, job_id: str, algorithm: dict) -> tuple[list[dict], dict]:
    """The DAG's task bodies in order, in this process (what ``dag.test`` runs, minus Airflow)."""
    from airflow_provider_osml.operators import feature_selection, geolocation, inference, planning

    validated = planning.validate_request({
        "jobId": job_id,
        "imageUrls": [str(scene)],
        "imageProcessor": {"name": url, "type": "HTTP_ENDPOINT"},
        "imageProcessorTileSize": TILE,
        "imageProcessorTileOverlap": OVERLAP,
        "imageProcessorTileFormat": "PNG",
        "regionSize": REGION,
        "postProcessing": [{"step": "FEATURE_DISTILLATION", "algorithm": algorithm}],
        "outputs": [{"type": "File", "path": str(tmp_path / "out")}],
    })
    regions = planning.plan_regions(validated)
    located = [
        geolocation.geolocate_region(validated, inference.infer_region(validated, region)) for region in regions
    ]
    feature_selection.select_features(validated, located)
    work = Path(validated["workStore"].removeprefix("file://")) / job_id
    return json.loads((work / "features.geojson").read_text())["features"], json.loads(
        (work / "selection.json").read_text()
    )


@pytest.fixture(scope="module")
def blobs_server():
    from airflow_provider_osml.models import serve_model

    server = serve_model("blobs", threshold=128)
    yield server
    server.stop()


@pytest.mark.parametrize(
    "algorithm",
    [
        {"algorithmType": "NMS", "iouThreshold": 0.75},
        {"algorithmType": "SOFT_NMS", "iouThreshold": 0.75, "skipBoxThreshold": 0.0001, "sigma": 0.1},
    ],
    ids=["nms", "soft_nms"],
)
def test_every_object_found_once_across_seams(tmp_path, allowed_roots, blobs_server, algorithm):
    objects = scene_objects()
    write_scene(tmp_path / "scene.tif", objects)
    features, counts = run_job(tmp_path, tmp_path / "scene.tif", blobs_server.url, f"seams-{algorithm['algorithmType']}",
                               algorithm)
    boxes = np.array([f["properties"]["imageBBox"] for f in features], dtype=float)
    for x0, y0, x1, y1 in objects:
        # blobs outlines pixel edges: a whole object's box is the rectangle itself
        hits = np.flatnonzero((np.abs(boxes - [x0, y0, x1, y1]) <= 1.0).all(axis=1))
        assert len(hits) == 1, f"object {(x0, y0, x1, y1)} found {len(hits)} times"
    assert len(features) == len(objects)
    assert counts["seamFragmentsMerged"] >= 2 * 10  # bars and corner squares came in parts
    for feature in features:
        assert seams.SEAM_TILE not in feature["properties"]
        assert feature["geometry"]["type"] == "Polygon"  # merged features are geolocated too
        assert len(feature["bbox"]) == 4


# --- unit level --------------------------------------------------------------------------------------


def test_fragments_from_two_tiles_merge_and_a_whole_copy_replaces_a_fragment():
    t1, t2 = [0, 0, 512, 512], [448, 0, 512, 512]
    boxes = np.array([
        [400, 100, 512, 120],  # bar cut by t1's right edge
        [448, 100, 600, 120],  # the same bar cut by t2's left edge
        [500, 300, 512, 320],  # small object cut by t1's edge ...
        [500, 300, 530, 320],  # ... seen whole by t2
        [400, 200, 512, 220],  # a bar fragment whose other part t2 missed: kept alone
    ], dtype=float)
    windows = np.array([t1, t2, t1, [np.nan] * 4, t1], dtype=float)
    replaced, groups = seams.resolve_fragments(boxes, np.zeros(5, dtype=int), windows)
    assert replaced.tolist() == [False, False, True, False, False]
    assert [g.tolist() for g in groups] == [[0, 1]]


def test_fragments_of_different_classes_or_positions_do_not_merge():
    t1, t2 = [0, 0, 512, 512], [448, 0, 512, 512]
    boxes = np.array([[400, 100, 512, 120], [448, 100, 600, 120], [400, 300, 512, 320], [448, 310, 600, 340]],
                     dtype=float)
    windows = np.array([t1, t2, t1, t2], dtype=float)
    replaced, groups = seams.resolve_fragments(boxes, np.array([0, 1, 0, 0]), windows)
    assert not replaced.any()
    assert groups == []  # other class; and 300-320 vs 310-340 agree too little where both tiles see


def test_merged_feature_has_the_union_shape_and_the_best_score():
    def fragment(x0, x1, score):
        ring = [[x0, 100], [x1, 100], [x1, 120], [x0, 120], [x0, 100]]
        return {
            "type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}, "bbox": [0, 0, 0, 0],
            "properties": {"imageGeometry": {"type": "Polygon", "coordinates": [ring]},
                           "imageBBox": [x0, 100, x1, 120], "featureClasses": [{"iri": "bar", "score": score}],
                           seams.SEAM_TILE: [0, 0, 512, 512]},
        }

    merged = seams.merge_fragments([fragment(400, 512, 0.7), fragment(448, 600, 0.9)])
    assert merged["properties"]["imageBBox"] == [400.0, 100.0, 600.0, 120.0]
    assert merged["properties"]["featureClasses"] == [{"iri": "bar", "score": 0.9}]
    assert merged["properties"]["imageGeometry"]["type"] == "Polygon"
    assert merged["geometry"] is None and "bbox" not in merged
    assert seams.SEAM_TILE not in merged["properties"]


def test_screen_tile_features_drops_copies_and_tags_fragments():
    tiles = np.array([[0, 0, 512, 512], [448, 0, 512, 512]], dtype=float)
    bounds = (0, 0, 960, 512)

    def feature(bbox):
        return {"type": "Feature", "geometry": None, "properties": {"imageBBox": list(bbox)}}

    kept = seams.screen_tile_features(
        [feature([500, 300, 512, 320]), feature([400, 100, 512, 120]), feature([100, 100, 120, 120])],
        [0, 0, 512, 512], tiles, bounds,
    )
    assert [f["properties"]["imageBBox"] for f in kept] == [[400, 100, 512, 120], [100, 100, 120, 120]]
    assert kept[0]["properties"][seams.SEAM_TILE] == [0, 0, 512, 512]
    assert seams.SEAM_TILE not in kept[1]["properties"]
