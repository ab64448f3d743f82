"""Tests for the region/tile planner: every vector of spec 2.7, golden counts, and grid properties."""

from __future__ import annotations

import json
import math
import random
import time

import numpy as np
import pytest

from airflow_provider_osml.tiling import (
    TILING_STRATEGIES,
    TileWindow,
    TilingPlan,
    expand_overlap,
    generate_crops,
    plan_image,
    plan_regions,
    plan_tiles,
    region_id,
    region_key,
    region_size_for_full_tiles,
)

VO, VT = "VARIABLE_OVERLAP", "VARIABLE_TILE"


def grid(cols, rows):
    """Row-major tiles from column spans [(col, w)] and row spans [(row, h)]."""
    return [((r, c), (w, h)) for r, h in rows for c, w in cols]


def full(cols, rows, size=512):
    return grid([(c, size) for c in cols], [(r, size) for r in rows])


# --- coverage helpers (exact, on the grid compressed to the tile edges) -----------------------------


def covered_mask(tiles, bounds):
    """Boolean mask over compressed cells of ``bounds``, plus the x and y cell edges."""
    (row, col), (width, height) = bounds
    xs = sorted({col, col + width} | {c for (_, c), _ in tiles} | {c + w for (_, c), (w, _) in tiles})
    ys = sorted({row, row + height} | {r for (r, _), _ in tiles} | {r + h for (r, _), (_, h) in tiles})
    xi, yi = {x: i for i, x in enumerate(xs)}, {y: i for i, y in enumerate(ys)}
    mask = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for (r, c), (w, h) in tiles:
        mask[yi[r] : yi[r + h], xi[c] : xi[c + w]] = True
    return mask, xs, ys


def covered_extent(tiles, bounds):
    """(width, height) of the covered area if it is exactly a rectangle anchored at the bounds' corner."""
    (row, col), (width, height) = bounds
    mask, xs, ys = covered_mask(tiles, bounds)
    cov_w = max(c + w for (_, c), (w, _) in tiles) - col
    cov_h = max(r + h for (r, _), (_, h) in tiles) - row
    inside = np.zeros_like(mask)
    inside[: ys.index(row + cov_h), : xs.index(col + cov_w)] = True
    assert (mask == inside).all(), "covered area is not a single rectangle at the bounds' corner"
    assert cov_w <= width and cov_h <= height, "tiles leave the processing bounds"
    return cov_w, cov_h


def upstream_gap_limit(length, tile, overlap):
    """VariableOverlap rounds the overlap up and may leave up to n - 2 pixels untiled at the end."""
    n = math.ceil((length - overlap) / (tile - overlap))
    return max(0, n - 2)


def check_plan_properties(plan: TilingPlan, width: int, height: int, max_regions: int = 1024):
    """The properties every plan must have (spec 2.3 plus this provider's guarantees)."""
    bounds = plan.processing_bounds
    (brow, bcol), (bw, bh) = bounds
    (tw, th), (ow, oh) = plan.tile_size, plan.tile_overlap
    tiles = plan.all_tiles()
    assert len(plan.regions) <= max_regions
    assert len(tiles) == len(set(tiles)) or plan.strategy == VT, "duplicate tiles"
    assert plan.tile_count() == len(tiles)
    for region in plan.regions:
        (rr, rc), (rw, rh) = region
        assert bcol <= rc and rc + rw <= bcol + bw and brow <= rr and rr + rh <= brow + bh
        for (r, c), (w, h) in plan.tiles(region):
            assert rc <= c and c + w <= rc + rw and rr <= r and r + h <= rr + rh, "tile outside its region"
    cov_w, cov_h = covered_extent(tiles, bounds)
    if plan.strategy == VT:
        assert (cov_w, cov_h) == (bw, bh)
        return
    # One global grid: every tile sits on the stride lattice of the adjusted overlap.
    ax, ay = plan.adjusted_overlap
    assert all((c - bcol) % (tw - ax) == 0 and (r - brow) % (th - ay) == 0 for (r, c), _ in tiles)
    if bw >= tw and bh >= th:
        assert all(size == (tw, th) for _, size in tiles), "partial tile in an image larger than a tile"
    assert bw - cov_w <= (upstream_gap_limit(bw, tw, ow) if bw >= tw else 0)
    assert bh - cov_h <= (upstream_gap_limit(bh, th, oh) if bh >= th else 0)


# --- spec 2.7 A, B, C: single region --------------------------------------------------------------

SINGLE_REGION = [
    pytest.param(
        1000, 600, VT, (50, 50),
        grid([(0, 512), (462, 512), (924, 76)], [(0, 512), (462, 138)]),
        id="A-1000x600-variable-tile",
    ),
    pytest.param(1000, 600, VO, (268, 424), full([0, 244, 488], [0, 88]), id="A-1000x600-variable-overlap"),
    pytest.param(974, 512, VT, (50, 50), full([0, 462], [0]), id="B-974x512-sliver-dropped-variable-tile"),
    pytest.param(974, 512, VO, (50, 50), full([0, 462], [0]), id="B-974x512-variable-overlap"),
    pytest.param(300, 200, VT, (50, 50), [((0, 0), (300, 200))], id="C-300x200-smaller-than-tile-variable-tile"),
    pytest.param(300, 200, VO, (50, 50), [((0, 0), (300, 200))], id="C-300x200-smaller-than-tile-variable-overlap"),
]


@pytest.mark.parametrize(("width", "height", "strategy", "overlap", "tiles"), SINGLE_REGION)
def test_single_region_vectors(width, height, strategy, overlap, tiles):
    plan = plan_image(width, height, tile_size=512, tile_overlap=50, strategy=strategy)
    assert plan.regions == (((0, 0), (width, height)),)
    assert plan.adjusted_overlap == overlap
    assert plan.all_tiles() == tiles
    check_plan_properties(plan, width, height)


def test_srcwin_of_truncated_tile():
    assert TileWindow.from_region(((462, 924), (76, 138))).as_list() == [924, 462, 76, 138]


# --- spec 2.7 D: multi-region ---------------------------------------------------------------------

TILE_COLS = [(0, 512), (462, 512), (924, 100)]
D_VARIABLE_TILE = [
    (((0, 0), (1024, 1024)), grid(TILE_COLS, TILE_COLS)),
    (((0, 974), (1024, 1024)), grid([(974, 512), (1436, 512), (1898, 100)], TILE_COLS)),
    (((0, 1948), (52, 1024)), grid([(1948, 52)], TILE_COLS)),
    (((974, 0), (1024, 526)), grid(TILE_COLS, [(974, 512), (1436, 64)])),
    (((974, 974), (1024, 526)), grid([(974, 512), (1436, 512), (1898, 100)], [(974, 512), (1436, 64)])),
    (((974, 1948), (52, 526)), grid([(1948, 52)], [(974, 512), (1436, 64)])),
]
D_VARIABLE_OVERLAP = [
    (((0, 0), (884, 841)), full([0, 372], [0, 329])),
    (((0, 744), (884, 841)), full([744, 1116], [0, 329])),
    (((0, 1488), (512, 841)), full([1488], [0, 329])),
    (((658, 0), (884, 841)), full([0, 372], [658, 987])),
    (((658, 744), (884, 841)), full([744, 1116], [658, 987])),
    (((658, 1488), (512, 841)), full([1488], [658, 987])),
]


@pytest.mark.parametrize(
    ("strategy", "expected", "tile_total", "overlap", "region_size"),
    [
        pytest.param(VT, D_VARIABLE_TILE, 35, (50, 50), (1024, 1024), id="D-2000x1500-variable-tile"),
        pytest.param(VO, D_VARIABLE_OVERLAP, 20, (140, 183), (884, 841), id="D-2000x1500-variable-overlap"),
    ],
)
def test_multi_region_vector_d(strategy, expected, tile_total, overlap, region_size):
    plan = plan_image(2000, 1500, tile_size=512, tile_overlap=50, region_size=1024, strategy=strategy)
    assert list(plan.regions) == [region for region, _ in expected]
    for region, tiles in expected:
        assert plan.tiles(region) == tiles, region
        assert plan_tiles(region, 512, 50, strategy) == tiles, region
    assert plan.tile_count() == tile_total == len(plan.all_tiles())
    assert plan.adjusted_overlap == overlap
    assert plan.adjusted_region_size == region_size
    assert plan_regions(((0, 0), (2000, 1500)), 1024, 512, 50, strategy) == list(plan.regions)


def test_vector_d_variable_tile_per_region_counts():
    plan = plan_image(2000, 1500, tile_size=512, tile_overlap=50, region_size=1024, strategy=VT)
    assert [len(plan.tiles(r)) for r in plan.regions] == [9, 9, 3, 6, 6, 2]


def test_vector_d_variable_overlap_global_grid():
    plan = plan_image(2000, 1500, tile_size=512, tile_overlap=50, region_size=1024)
    tiles = plan.all_tiles()
    assert {c for (_, c), _ in tiles} == {0, 372, 744, 1116, 1488}
    assert {r for (r, _), _ in tiles} == {0, 329, 658, 987}
    assert len(tiles) == len(set(tiles)) == 20


# --- spec 2.7 E: upstream golden vectors ----------------------------------------------------------


def test_generate_crops_sixteen_chips():
    chips = generate_crops(((5, 10), (1024, 1024)), (300, 300), (44, 44))
    assert len(chips) == 16
    assert chips[0] == ((5, 10), (300, 300))
    assert chips[1] == ((5, 266), (300, 300))
    assert chips[3] == ((5, 778), (256, 300))
    assert chips[12] == ((773, 10), (300, 256))
    assert chips[15] == ((773, 778), (256, 256))


def test_generate_crops_six_chips_no_overlap():
    assert generate_crops(((0, 0), (5000, 2500)), (2048, 2048), (0, 0)) == [
        ((0, 0), (2048, 2048)),
        ((0, 2048), (2048, 2048)),
        ((0, 4096), (904, 2048)),
        ((2048, 0), (2048, 452)),
        ((2048, 2048), (2048, 452)),
        ((2048, 4096), (904, 452)),
    ]


@pytest.mark.parametrize(
    ("chip", "overlap"),
    [
        pytest.param((300, 300), (301, 301), id="overlap-301-chip-300"),
        pytest.param((300, 300), (300, 10), id="overlap-equal-chip-x"),
        pytest.param((140, 140), (140, 140), id="spec-Q18-message"),
    ],
)
def test_generate_crops_rejects_overlap_not_below_chip(chip, overlap):
    with pytest.raises(ValueError, match=rf"chip_size = \({chip[0]}, {chip[1]}\) overlap = \({overlap[0]}, "):
        generate_crops(((0, 0), (1000, 1000)), chip, overlap)


def test_generate_crops_only_full_tiles():
    assert generate_crops(((0, 0), (1000, 600)), 512, 50, only_full_tiles=True) == [((0, 0), (512, 512)),
                                                                                     ((0, 462), (512, 512))]


def test_generate_crops_accepts_ints_and_lists():
    assert generate_crops([[5, 10], [1024, 1024]], 300, 44) == generate_crops(((5, 10), (1024, 1024)),
                                                                             (300, 300), (44, 44))


REGIONS_25000 = [
    ((0, 0), (7580, 8048)),
    ((0, 6968), (7580, 8048)),
    ((0, 13936), (7580, 8048)),
    ((0, 20904), (4096, 8048)),
    ((7904, 0), (7580, 4096)),
    ((7904, 6968), (7580, 4096)),
    ((7904, 13936), (7580, 4096)),
    ((7904, 20904), (4096, 4096)),
]


def test_variable_overlap_25000x12000_regions_and_tiles():
    plan = plan_image(25000, 12000, tile_size=4096, tile_overlap=100, region_size=10000)
    assert list(plan.regions) == REGIONS_25000
    assert plan.adjusted_overlap == (612, 144)
    assert plan.tiles(((0, 0), (7580, 8048))) == full([0, 3484], [0, 3952], size=4096)
    assert plan_tiles(((0, 0), (7580, 8048)), 4096, 100) == full([0, 3484], [0, 3952], size=4096)
    assert plan.tile_count() == len(plan.all_tiles()) == 21
    # The overlap divides evenly here, so the whole image is covered.
    assert covered_extent(plan.all_tiles(), plan.processing_bounds) == (25000, 12000)
    check_plan_properties(plan, 25000, 12000)


ROI_REGIONS = [
    ((200, 8000), (7322, 7948)),
    ((200, 14452), (7322, 7948)),
    ((200, 20904), (4096, 7948)),
    ((7904, 8000), (7322, 4096)),
    ((7904, 14452), (7322, 4096)),
    ((7904, 20904), (4096, 4096)),
]


def test_variable_overlap_roi_bounds():
    bounds = ((200, 8000), (17000, 11800))
    assert plan_regions(bounds, (10000, 10000), (4096, 4096), (100, 100)) == ROI_REGIONS
    plan = plan_image(25000, 12000, tile_size=4096, tile_overlap=100, region_size=10000, processing_bounds=bounds)
    assert plan.processing_bounds == bounds
    assert list(plan.regions) == ROI_REGIONS
    check_plan_properties(plan, 25000, 12000)


def test_variable_overlap_image_lower_than_tile():
    plan = plan_image(12000, 2000, tile_size=4096, tile_overlap=100, region_size=10000)
    assert list(plan.regions) == [((0, 0), (8048, 2000)), ((0, 7904), (4096, 2000))]
    assert plan.all_tiles() == [((0, 0), (4096, 2000)), ((0, 3952), (4096, 2000)), ((0, 7904), (4096, 2000))]
    check_plan_properties(plan, 12000, 2000)


def test_variable_overlap_tiny_region():
    assert plan_tiles(((10, 50), (1024, 2048)), 4096, 100) == [((10, 50), (1024, 2048))]


def test_variable_tile_25000x12000():
    plan = plan_image(25000, 12000, tile_size=4096, tile_overlap=100, region_size=10240, strategy=VT)
    assert len(plan.regions) == 6
    assert plan.tile_count() == 32
    check_plan_properties(plan, 25000, 12000)


@pytest.mark.parametrize(
    ("strategy", "regions", "tiles", "overlap", "region_size"),
    [
        pytest.param(VT, 6, 704, (50, 50), (10240, 10240), id="variable-tile"),
        pytest.param(VO, 12, 651, (59, 76), (9709, 9556), id="variable-overlap"),
    ],
)
def test_default_request_30000x20000(strategy, regions, tiles, overlap, region_size):
    plan = plan_image(30000, 20000, tile_size=1024, tile_overlap=50, region_size=10240, strategy=strategy)
    assert len(plan.regions) == regions
    assert plan.tile_count() == tiles
    assert plan.adjusted_overlap == overlap
    assert plan.adjusted_region_size == region_size
    check_plan_properties(plan, 30000, 20000)


def test_variable_overlap_30000x20000_leaves_upstream_edge_gap():
    """Upstream rounds the overlap up: the grid ends 26 px before the right and 16 px before the bottom."""
    plan = plan_image(30000, 20000, tile_size=1024, tile_overlap=50, region_size=10240)
    assert covered_extent(plan.all_tiles(), plan.processing_bounds) == (30000 - 26, 20000 - 16)


def test_very_large_overlap():
    plan = plan_image(5000, 5000, tile_size=4096, tile_overlap=100)
    assert plan.adjusted_overlap == (3192, 3192)
    assert plan.all_tiles() == full([0, 904], [0, 904], size=4096)


def test_region_smaller_than_tile_is_grown_q18():
    """Upstream raises here (spec 2.3 / 11 Q18); a region now holds at least one tile."""
    plan = plan_image(2000, 2000, tile_size=512, tile_overlap=50, region_size=(500, 500))
    assert plan.region_size == (512, 512)
    assert plan.adjusted_overlap == (140, 140)
    assert all(size == (512, 512) for _, size in plan.regions)
    assert plan.tile_count() == 25
    check_plan_properties(plan, 2000, 2000)
    assert len(plan_regions(((0, 0), (2000, 2000)), (500, 500), 512, 50)) == 25


def test_region_smaller_than_tile_variable_tile():
    plan = plan_image(2000, 2000, tile_size=512, tile_overlap=50, region_size=300, strategy=VT)
    assert plan.region_size == (512, 512)
    check_plan_properties(plan, 2000, 2000)


# --- golden tile counts (osml-ecosystem 4.2) --------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "region_size", "regions", "tiles"),
    [
        pytest.param(1024, 1024, 10240, 1, 9, id="meta-1024x1024"),
        pytest.param(3376, 2576, 10240, 1, 63, id="small-3376x2576"),
        pytest.param(6679, 3859, 10240, 1, 180, id="interferometric-6679x3859"),
        pytest.param(12987, 12438, 8192, 4, 1122, id="large-12987x12438-region-8192"),
        pytest.param(12987, 12438, 10240, 4, 1122, id="large-12987x12438-region-10240"),
    ],
)
def test_golden_tile_counts(width, height, region_size, regions, tiles):
    plan = plan_image(width, height, tile_size=512, tile_overlap=128, region_size=region_size)
    assert len(plan.regions) == regions
    assert plan.tile_count() == tiles == len(plan.all_tiles())
    check_plan_properties(plan, width, height)


# --- expand_overlap and region alignment ------------------------------------------------------------


@pytest.mark.parametrize(
    ("D", "T", "O", "expected"),
    [
        pytest.param(1000, 512, 50, 268, id="1000-px"),
        pytest.param(600, 512, 50, 424, id="600-px"),
        pytest.param(1024, 512, 128, 256, id="1024-px-three-tiles"),
        pytest.param(5000, 4096, 100, 3192, id="very-large"),
        pytest.param(512, 512, 50, 50, id="exactly-one-tile"),
        pytest.param(300, 512, 50, 50, id="smaller-than-tile"),
        pytest.param(974, 512, 50, 50, id="already-fits"),
    ],
)
def test_expand_overlap(D, T, O, expected):  # noqa: N803, E741
    assert expand_overlap(D, T, O) == expected


def test_region_size_for_full_tiles():
    assert region_size_for_full_tiles((1024, 1024), (512, 512), (140, 183)) == (884, 841)
    assert region_size_for_full_tiles((10000, 10000), (4096, 4096), (612, 144)) == (7580, 8048)


# --- fixes beyond upstream -------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", TILING_STRATEGIES)
def test_image_no_larger_than_overlap_still_planned(strategy):
    """Upstream drops an axis of at most `overlap` pixels as a sliver and plans nothing."""
    plan = plan_image(2413, 142, tile_size=256, tile_overlap=201, region_size=1968, strategy=strategy)
    assert plan.regions
    assert covered_extent(plan.all_tiles(), plan.processing_bounds)[1] == 142
    check_plan_properties(plan, 2413, 142)


def test_plan_tiles_stay_on_global_grid_for_small_strides():
    """Upstream re-expands the overlap per region; for tiny strides that drifts off the global grid."""
    plan = plan_image(124, 341, tile_size=16, tile_overlap=9, region_size=185)
    check_plan_properties(plan, 124, 341)


def test_axis_lower_than_tile_keeps_last_region_on_grid():
    """Upstream leaves the bounds untrimmed here, so its last region gets tiles at rows 276 and 279."""
    plan = plan_image(8, 343, tile_size=64, tile_overlap=12, region_size=110)
    assert plan.regions[-1] == ((276, 0), (8, 64))
    assert plan.tiles(plan.regions[-1]) == [((276, 0), (8, 64))]
    check_plan_properties(plan, 8, 343)


# --- max_regions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", TILING_STRATEGIES)
@pytest.mark.parametrize("max_regions", [1, 7, 100])
def test_max_regions_cap(strategy, max_regions):
    plan = plan_image(200_000, 200_000, tile_size=512, tile_overlap=50, region_size=10240,
                      strategy=strategy, max_regions=max_regions)
    assert len(plan.regions) <= max_regions
    assert plan.region_size[0] > 10240
    assert plan_regions(plan.processing_bounds, plan.region_size, 512, 50, strategy) == list(plan.regions)


def test_max_regions_keeps_one_global_grid():
    plan = plan_image(200_000, 200_000, tile_size=512, tile_overlap=50, region_size=10240, max_regions=100)
    assert len(plan.regions) <= 100
    assert plan.tile_count() == plan_image(200_000, 200_000, tile_size=512, tile_overlap=50).tile_count()
    check_plan_properties(plan, 200_000, 200_000, max_regions=100)


def test_max_regions_not_needed_keeps_region_size():
    plan = plan_image(200_000, 200_000, tile_size=512, tile_overlap=50)
    assert plan.region_size == (10240, 10240)
    assert len(plan.regions) == 400


def test_max_regions_grows_only_as_needed():
    plan = plan_image(200_000, 200_000, tile_size=512, tile_overlap=50, max_regions=100)
    smaller = (plan.region_size[0] - 1, plan.region_size[1] - 1)
    assert len(plan_regions(plan.processing_bounds, smaller, 512, 50)) > 100


def test_planning_is_fast():
    start = time.perf_counter()
    plan = plan_image(200_000, 200_000, tile_size=512, tile_overlap=50)
    plan.tile_count()
    plan_image(200_000, 200_000, tile_size=512, tile_overlap=50, max_regions=10, strategy=VT).tile_count()
    assert time.perf_counter() - start < 0.5


# --- random property sweep -------------------------------------------------------------------------


def random_cases(count=150, seed=20240611):
    rng = random.Random(seed)
    for index in range(count):
        tile = rng.choice([16, 64, 100, 256, 512])
        overlap = rng.randrange(0, tile)
        width, height = rng.randrange(1, 12 * tile), rng.randrange(1, 12 * tile)
        region = rng.randrange(1, 6 * tile)
        max_regions = rng.choice([1, 5, 1024])
        strategy = TILING_STRATEGIES[index % 2]
        bounds, roi = None, "full"
        if index % 3 == 0:  # an ROI inside the image
            row, col = rng.randrange(height), rng.randrange(width)
            bounds = ((row, col), (rng.randrange(1, width - col + 1), rng.randrange(1, height - row + 1)))
            roi = f"roi-r{row}-c{col}-{bounds[1][0]}x{bounds[1][1]}"
        yield pytest.param(width, height, tile, overlap, region, max_regions, strategy, bounds,
                           id=f"{strategy}-{width}x{height}-t{tile}-o{overlap}-r{region}-m{max_regions}-{roi}")


@pytest.mark.parametrize(
    ("width", "height", "tile", "overlap", "region", "max_regions", "strategy", "bounds"), list(random_cases())
)
def test_random_plan_properties(width, height, tile, overlap, region, max_regions, strategy, bounds):
    plan = plan_image(width, height, tile_size=tile, tile_overlap=overlap, region_size=region,
                      strategy=strategy, max_regions=max_regions, processing_bounds=bounds)
    check_plan_properties(plan, width, height, max_regions)


@pytest.mark.parametrize("strategy", TILING_STRATEGIES)
def test_rectangular_sizes(strategy):
    plan = plan_image(5000, 3000, tile_size=(512, 256), tile_overlap=(64, 32), region_size=(2048, 1024),
                      strategy=strategy)
    assert all(size == (512, 256) for _, size in plan.all_tiles()) or strategy == VT
    check_plan_properties(plan, 5000, 3000)


# --- serialisation, windows, ids --------------------------------------------------------------------


def json_types_only(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_types_only(v) for v in value)
    return isinstance(value, (int, str)) and not isinstance(value, bool)


@pytest.mark.parametrize("strategy", TILING_STRATEGIES)
def test_to_dict_round_trip(strategy):
    plan = plan_image(25000, 12000, tile_size=4096, tile_overlap=100, region_size=10000, strategy=strategy,
                      processing_bounds=((200, 8000), (17000, 11800)))
    data = plan.to_dict()
    assert json_types_only(data)
    again = TilingPlan.from_dict(json.loads(json.dumps(data)))
    assert again == plan
    assert again.all_tiles() == plan.all_tiles()


def test_tiles_accept_json_regions():
    plan = plan_image(2000, 1500, tile_size=512, tile_overlap=50, region_size=1024)
    region = json.loads(json.dumps(plan.regions[1]))
    assert plan.tiles(region) == plan.tiles(plan.regions[1])


def test_tile_window():
    window = TileWindow.from_region(((462, 924), (76, 138)))
    assert window == TileWindow(col=924, row=462, width=76, height=138)
    assert window.to_region() == ((462, 924), (76, 138))
    assert window.bounds == (924, 462, 1000, 600)
    assert window.as_list() == [924, 462, 76, 138]
    assert window.key == "c924-r462-w76-h138"


def test_region_id_and_key():
    region = ((0, 744), (884, 841))
    assert region_id(region, "demo-job-0001") == "(0, 744)(884, 841)-demo-job-0001"
    assert region_id([[0, 744], [884, 841]], "demo-job-0001") == "(0, 744)(884, 841)-demo-job-0001"
    assert region_key(region) == "r0000000-c0000744-w884-h841"
    keys = [region_key(r) for r in D_VARIABLE_OVERLAP_REGIONS]
    assert keys == sorted(keys)


D_VARIABLE_OVERLAP_REGIONS = [region for region, _ in D_VARIABLE_OVERLAP]


# --- input validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"tile_overlap": 512}, "must be less than tile size", id="overlap-equals-tile"),
        pytest.param({"tile_overlap": -1}, "must not be negative", id="negative-overlap"),
        pytest.param({"tile_size": 0, "tile_overlap": 0}, "must be positive", id="zero-tile"),
        pytest.param({"strategy": "GRID"}, "unknown tiling strategy", id="unknown-strategy"),
        pytest.param({"max_regions": 0}, "max_regions", id="zero-max-regions"),
        pytest.param({"processing_bounds": ((5000, 0), (10, 10))}, "do not intersect", id="roi-outside"),
        pytest.param({"tile_size": (512, 512, 1)}, "pair", id="three-values"),
        pytest.param({"tile_size": 512.5}, "integer", id="fractional-size"),
    ],
)
def test_plan_image_rejects_bad_input(kwargs, message):
    args = {"tile_size": 512, "tile_overlap": 50} | kwargs
    with pytest.raises(ValueError, match=message):
        plan_image(1000, 600, **args)


def test_plan_image_rejects_empty_image():
    with pytest.raises(ValueError, match="positive"):
        plan_image(0, 600, tile_size=512, tile_overlap=50)


def test_processing_bounds_clipped_to_image():
    plan = plan_image(1000, 600, tile_size=512, tile_overlap=50, processing_bounds=((-10, 500), (900, 900)))
    assert plan.processing_bounds == ((0, 500), (500, 600))


def test_strategy_name_case_insensitive():
    assert plan_image(1000, 600, tile_size=512, tile_overlap=50, strategy="variable_tile").strategy == VT
