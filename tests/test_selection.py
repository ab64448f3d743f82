"""Tests for the NMS / Soft-NMS kernels: spec 4.5 golden vectors, and parity of the fast paths with the
plain O(N^2) references."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_osml import selection
from airflow_provider_osml.selection import (
    class_labels,
    nms,
    nms_reference,
    soft_nms,
    soft_nms_reference,
    top_class,
)

# Spec 4.5 extra vector: a, b, c, e are boats, d is a car.
A, B, C, D, E = range(5)
EXTRA_BOXES = np.array(
    [[50, 50, 100, 100], [45, 45, 101, 101], [250, 255, 300, 275], [52, 52, 98, 98], [60, 60, 110, 110]],
    dtype=float,
)
EXTRA_SCORES = np.array([0.85, 0.93, 0.80, 0.99, 0.70])
EXTRA_CLASSES = class_labels(["boat", "boat", "boat", "car", "boat"])


def iou(first: list[float], second: list[float]) -> float:
    prep = selection._prepare(np.array([first, second], dtype=float), [0, 0], [0, 0], None)
    return float(selection._iou(prep, np.array([0]), np.array([1]))[0])


# --- spec 4.5 golden vectors -----------------------------------------------------------------------


def test_iou_values_quoted_in_the_spec():
    assert iou([50, 50, 100, 100], [45, 45, 101, 101]) == pytest.approx(0.797, abs=5e-4)
    assert iou([40, 40, 90, 90], [50, 50, 100, 100]) == pytest.approx(0.47, abs=5e-3)
    assert iou([60, 60, 110, 110], [45, 45, 101, 101]) == pytest.approx(0.425, abs=5e-4)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges do not overlap


def test_nms_default_threshold_drops_the_near_duplicate():
    boxes = [[50, 50, 100, 100], [45, 45, 101, 101], [250, 250, 300, 275]]
    kept = nms(boxes, [0.45, 0.57, 0.60], [0, 0, 0])
    assert sorted(kept.tolist()) == [1, 2]


@pytest.mark.parametrize(("threshold", "expected"), [(0.4, 1), (0.7, 2)])
def test_nms_threshold_is_respected(threshold, expected):
    kept = nms([[40, 40, 90, 90], [50, 50, 100, 100]], [0.45, 0.57], [0, 0], threshold)
    assert len(kept) == expected
    assert kept[0] == 1


def test_nms_is_class_aware():
    boxes = [[50, 50, 100, 100], [45, 45, 101, 101], [250, 250, 300, 275]]
    classes = class_labels(["ground_motor_passenger_vehicle", "boat", "boat"])
    assert sorted(nms(boxes, [0.45, 0.57, 0.60], classes).tolist()) == [0, 1, 2]


def test_a_point_feature_alone_is_kept():
    point = [[409.6, 409.6, 409.6, 409.6]]
    assert nms(point, [0.9], [0]).tolist() == [0]
    kept, scores = soft_nms(point, [0.9], [0])
    assert kept.tolist() == [0]
    assert scores.tolist() == [0.9]


def test_soft_nms_default_keeps_all_three_and_writes_decayed_scores():
    boxes = [[50, 50, 100, 100], [45, 45, 101, 101], [250, 255, 300, 275]]
    kept, scores = soft_nms(boxes, [0.85, 0.93, 0.80], [0, 0, 0])
    assert kept.tolist() == [1, 2, 0]  # b, c, a, as upstream
    # Upstream writes the original 0.85 back for a (spec 11 Q4); we return the decayed score.
    expected_a = 0.85 * math.exp(-(iou(boxes[0], boxes[1]) ** 2) / 0.1)
    assert scores.tolist() == pytest.approx([0.93, 0.80, expected_a])
    assert scores[2] == pytest.approx(0.0015, abs=1e-4)


@pytest.mark.parametrize("threshold", [0.75, 0.5])
def test_extra_vector_nms(threshold):
    kept = nms(EXTRA_BOXES, EXTRA_SCORES, EXTRA_CLASSES, threshold)
    assert set(kept.tolist()) == {B, C, E, D}


def test_extra_vector_soft_nms_defaults_keep_everything():
    kept, scores = soft_nms(EXTRA_BOXES, EXTRA_SCORES, EXTRA_CLASSES)
    assert set(kept.tolist()) == {A, B, C, D, E}
    decayed = dict(zip(kept.tolist(), scores.tolist(), strict=True))
    assert decayed[B] == 0.93 and decayed[C] == 0.80 and decayed[D] == 0.99
    assert decayed[E] == pytest.approx(0.115, abs=5e-4)
    # The spec's "a decays to ~0.0015" is a after b only. e is taken before a and decays it again
    # (IoU 0.47), leaving ~1.6e-4: still above the default skip threshold of 1e-4.
    after_b = 0.85 * math.exp(-(iou(EXTRA_BOXES[A], EXTRA_BOXES[B]) ** 2) / 0.1)
    assert after_b == pytest.approx(0.0015, abs=1e-4)
    assert decayed[A] == pytest.approx(after_b * math.exp(-(iou(EXTRA_BOXES[A], EXTRA_BOXES[E]) ** 2) / 0.1))
    assert decayed[A] == pytest.approx(1.6e-4, abs=1e-5)


def test_extra_vector_soft_nms_skip_threshold():
    kept, scores = soft_nms(EXTRA_BOXES, EXTRA_SCORES, EXTRA_CLASSES, skip_box_threshold=0.5)
    assert set(kept.tolist()) == {B, C, D}
    assert kept.tolist() == [D, B, C]  # descending decayed score
    assert scores.tolist() == [0.99, 0.93, 0.80]


def test_soft_nms_ignores_iou_threshold_for_gaussian():
    default = soft_nms(EXTRA_BOXES, EXTRA_SCORES, EXTRA_CLASSES)
    other = soft_nms(EXTRA_BOXES, EXTRA_SCORES, EXTRA_CLASSES, iou_threshold=0.1)
    np.testing.assert_array_equal(default[0], other[0])
    np.testing.assert_array_equal(default[1], other[1])


def test_linear_soft_nms_decays_only_above_the_threshold():
    kept, scores = soft_nms(EXTRA_BOXES, EXTRA_SCORES, EXTRA_CLASSES, method="linear", iou_threshold=0.5)
    decayed = dict(zip(kept.tolist(), scores.tolist(), strict=True))
    assert decayed[A] == pytest.approx(0.85 * (1 - iou(EXTRA_BOXES[A], EXTRA_BOXES[B])))
    assert decayed[E] == 0.70  # IoU 0.425 with b and 0.47 with a: below 0.5


# --- edge cases ------------------------------------------------------------------------------------


def test_two_identical_boxes_keep_one():
    boxes = [[10, 10, 20, 20], [10, 10, 20, 20]]
    assert nms(boxes, [0.5, 0.5], [0, 0]).tolist() == [0]  # tie: the lower index wins
    assert nms(boxes, [0.5, 0.6], [0, 0]).tolist() == [1]
    kept, _ = soft_nms(boxes, [0.5, 0.5], [0, 0])
    assert kept.tolist() == [0]  # 0.5 * exp(-1 / 0.1) < 1e-4


def test_identical_points_collapse_and_a_point_inside_a_box_survives():
    boxes = [[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10]]
    assert nms(boxes, [0.9, 0.8, 0.7], [0, 0, 0]).tolist() == [0, 2]


def test_swapped_corners_are_reordered():
    assert nms([[20, 20, 10, 10], [10, 10, 20, 20]], [0.9, 0.8], [0, 0]).tolist() == [0]


def test_empty_input():
    assert nms(np.empty((0, 4)), [], []).tolist() == []
    kept, scores = soft_nms(np.empty((0, 4)), [], [])
    assert kept.tolist() == [] and scores.tolist() == []


def test_string_labels_work_directly():
    kept = nms(EXTRA_BOXES, EXTRA_SCORES, np.array(["boat", "boat", "boat", "car", "boat"]))
    assert set(kept.tolist()) == {B, C, E, D}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: nms([[0, 0, 1, 1]], [0.5], [0], -0.1), "iou_threshold"),
        (lambda: nms([[0, 0, 1, 1]], [0.5], [0], 1.5), "iou_threshold"),
        (lambda: nms([[0, 0, 1, 1]], [0.5, 0.6], [0]), "differ in length"),
        (lambda: nms([[0, 0, 1]], [0.5], [0]), r"\(N, 4\)"),
        (lambda: nms([[0, 0, np.nan, 1]], [0.5], [0]), "finite"),
        (lambda: nms([[0, 0, 1, 1]], [np.inf], [0]), "finite"),
        (lambda: soft_nms([[0, 0, 1, 1]], [0.5], [0], sigma=0.0), "sigma"),
        (lambda: soft_nms([[0, 0, 1, 1]], [0.5], [0], method="hard"), "method"),
        (lambda: nms([[0, 0, 1, 1]], [0.5], [0], polygons=[]), "polygons"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- polygon IoU -----------------------------------------------------------------------------------


def test_polygon_iou_keeps_triangles_whose_boxes_coincide():
    lower = shapely.Polygon([(0, 0), (100, 0), (0, 100)])
    upper = shapely.Polygon([(100, 100), (0, 100), (100, 0)])  # shares only the diagonal with lower
    boxes = np.array([lower.bounds, upper.bounds])
    assert nms(boxes, [0.9, 0.8], [0, 0]).tolist() == [0]
    assert nms(boxes, [0.9, 0.8], [0, 0], polygons=[lower, upper]).tolist() == [0, 1]
    assert nms_reference(boxes, [0.9, 0.8], [0, 0], polygons=[lower, upper]).tolist() == [0, 1]
    kept, scores = soft_nms(boxes, [0.9, 0.8], [0, 0], polygons=[lower, upper])
    assert kept.tolist() == [0, 1] and scores.tolist() == [0.9, 0.8]


def test_polygon_iou_suppresses_overlapping_polygons_and_points_fall_back_to_boxes():
    big = shapely.Polygon([(0, 0), (100, 0), (0, 100)])
    near = shapely.Polygon([(1, 0), (100, 0), (1, 99)])
    point = shapely.Point(50, 50)
    same_point = shapely.Point(50, 50)
    geoms = [big, near, point, same_point]
    boxes = np.array([g.bounds for g in geoms])
    assert nms(boxes, [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1], polygons=geoms).tolist() == [0, 2]


def test_polygon_nms_matches_reference_on_random_quads():
    rng = np.random.default_rng(7)
    centers = rng.uniform(0, 400, (300, 2))
    geoms = [
        shapely.Polygon(c + rng.uniform(-15, 15, (4, 2))).convex_hull.buffer(0) if k % 7 else shapely.Point(c)
        for k, c in enumerate(centers)
    ]
    boxes = shapely.bounds(np.array(geoms, dtype=object))
    scores = rng.random(300).round(1)
    classes = rng.integers(0, 2, 300)
    for threshold in (0.1, 0.5):
        np.testing.assert_array_equal(
            nms(boxes, scores, classes, threshold, polygons=geoms),
            nms_reference(boxes, scores, classes, threshold, polygons=geoms),
        )
    fast = soft_nms(boxes, scores, classes, polygons=geoms)
    ref = soft_nms_reference(boxes, scores, classes, polygons=geoms)
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_array_equal(fast[1], ref[1])


# --- helpers ---------------------------------------------------------------------------------------


def test_class_labels_are_sorted_unique_positions():
    assert class_labels(["car", "boat", "car", ""]).tolist() == [2, 1, 2, 0]
    assert class_labels([]).tolist() == []


@pytest.mark.parametrize(
    ("classes", "expected"),
    [
        ([{"iri": "boat", "score": 0.4}, {"iri": "car", "score": 0.7}], ("car", 0.7)),
        ([{"iri": "boat", "score": 0.5}, {"iri": "car", "score": 0.5}], ("boat", 0.5)),  # first of ties
        ([], ("", -1.0)),
        (None, ("", -1.0)),
        ([{"iri": "boat", "score": -1.0}], ("", -1.0)),  # not strictly above the -1.0 start
        ([{"iri": "boat"}, {"iri": "car", "score": 0.2}], ("car", 0.2)),
    ],
)
def test_top_class(classes, expected):
    assert top_class(classes) == expected


# --- parity with the references --------------------------------------------------------------------

_KINDS = ("box", "box", "box", "dup", "point", "line", "swapped", "huge", "tiny")


@st.composite
def box_sets(draw: st.DrawFn, max_size: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered, class-aware box sets with tied scores, duplicates, points, lines, swapped corners,
    and boxes far larger or smaller than the rest. Integer grids on a scale make exact ties likely."""
    unit = draw(st.sampled_from([1e-3, 0.5, 1.0, 7.5, 1000.0]))
    span = draw(st.sampled_from([4, 12, 40, 400]))
    score_pool = draw(
        st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 0.9, 1.0, -1.0]), min_size=1, max_size=4)
        | st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8)
    )
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_KINDS),
                st.integers(0, span),
                st.integers(0, span),
                st.integers(1, 12),
                st.integers(1, 12),
                st.integers(0, len(score_pool) - 1),
                st.integers(0, 2),
            ),
            max_size=max_size,
        )
    )
    boxes, scores, classes = [], [], []
    for kind, x, y, w, h, score, label in rows:
        if kind == "dup" and boxes:
            box = list(boxes[-1])
        elif kind == "point":
            box = [x, y, x, y]
        elif kind == "line":
            box = [x, y, x, y + h]
        elif kind == "swapped":
            box = [x + w, y + h, x, y]
        elif kind == "huge":
            box = [x, y, x + 1000 * w, y + 1000 * h]
        elif kind == "tiny":
            box = [x, y, x + w * 1e-4, y + h * 1e-4]
        else:
            box = [x, y, x + w, y + h]
        boxes.append(box)
        scores.append(score_pool[score])
        classes.append(label)
    array = np.array(boxes, dtype=float).reshape(-1, 4) * unit
    return array, np.array(scores, dtype=float), np.array(classes, dtype=np.int64)


# Force the grid path (dense_max 0) and the fallbacks of the vectorised rounds (0 or 1 round).
_PATHS = st.fixed_dictionaries(
    {
        "DENSE_MAX_BOXES": st.sampled_from([0, selection.DENSE_MAX_BOXES]),
        "_MAX_PEEL_ROUNDS": st.sampled_from([0, 1, selection._MAX_PEEL_ROUNDS]),
        "_MAX_SOFT_ROUNDS": st.sampled_from([0, 1, 2, selection._MAX_SOFT_ROUNDS]),
        "_MAX_KEY": st.sampled_from([1, selection._MAX_KEY]),
        "_NMS_SPREAD": st.sampled_from([0.0, selection._NMS_SPREAD, math.inf]),
    }
)
_THRESHOLDS = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.75, 1.0]) | st.floats(0.0, 1.0)
_PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(data=box_sets(), threshold=_THRESHOLDS, paths=_PATHS)
def test_nms_matches_reference(data, threshold, paths):
    boxes, scores, classes = data
    with mock.patch.multiple(selection, **paths):
        fast = nms(boxes, scores, classes, threshold)
    np.testing.assert_array_equal(fast, nms_reference(boxes, scores, classes, threshold))


@_PROPERTY
@given(
    data=box_sets(),
    method=st.sampled_from(["gaussian", "linear"]),
    sigma=st.sampled_from([0.05, 0.1, 0.5, 2.0]),
    skip=st.sampled_from([0.0, 0.0001, 0.1, 0.5]),
    threshold=_THRESHOLDS,
    paths=_PATHS,
)
def test_soft_nms_matches_reference(data, method, sigma, skip, threshold, paths):
    boxes, scores, classes = data
    options = {"sigma": sigma, "skip_box_threshold": skip, "method": method, "iou_threshold": threshold}
    with mock.patch.multiple(selection, **paths):
        kept, decayed = soft_nms(boxes, scores, classes, **options)
    ref_kept, ref_decayed = soft_nms_reference(boxes, scores, classes, **options)
    np.testing.assert_array_equal(kept, ref_kept)
    np.testing.assert_allclose(decayed, ref_decayed, rtol=1e-12, atol=0.0)


@_PROPERTY
@given(data=box_sets(), threshold=_THRESHOLDS)
def test_nms_result_is_a_greedy_suppression(data, threshold):
    # Checks the reference itself: kept boxes do not suppress each other, and each dropped box has a
    # kept box of its class that ranks higher and overlaps it by more than the threshold.
    boxes, scores, classes = data
    kept = nms_reference(boxes, scores, classes, threshold)
    prep = selection._prepare(boxes, scores, classes, None)
    rank = {k: (-scores[k], k) for k in range(len(scores))}
    assert [rank[k] for k in kept.tolist()] == sorted(rank[k] for k in kept.tolist())
    kept_set = set(kept.tolist())
    for k in range(len(scores)):
        same = [m for m in kept_set if m != k and classes[m] == classes[k]]
        overlaps = selection._iou(prep, np.full(len(same), k), np.array(same, dtype=np.intp))
        if k in kept_set:
            assert not (overlaps > threshold).any()
        else:
            assert any(o > threshold and rank[m] < rank[k] for m, o in zip(same, overlaps, strict=True))


@_PROPERTY
@given(data=box_sets(), use_key_fallback=st.booleans())
def test_grid_finds_exactly_the_overlapping_pairs(data, use_key_fallback):
    boxes, scores, classes = data
    prep = selection._prepare(boxes, scores, classes, None)
    n = len(prep.scores)
    i, j = np.triu_indices(n, k=1)
    expected = {
        (a, b)
        for a, b, over in zip(i.tolist(), j.tolist(), selection._iou(prep, i, j) > 0, strict=True)
        if over and prep.classes[a] == prep.classes[b]
    }
    with mock.patch.multiple(selection, DENSE_MAX_BOXES=0, _MAX_KEY=1 if use_key_fallback else 2**62):
        gi, gj = selection._overlapping_pairs(prep.boxes, prep.classes)
    found = list(zip(gi.tolist(), gj.tolist(), strict=True))
    assert len(found) == len(set(found))  # each pair reported once
    assert set(found) == expected


def clustered_scene(seed: int, n: int, big_share: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0, 3000, (n // 5, 2))
    middle = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 6, (n, 2))
    size = rng.uniform(5, 60, (n, 2))
    big = rng.random(n) < big_share
    size[big] *= rng.uniform(5, 40, (int(big.sum()), 1))
    boxes = np.hstack([middle - size / 2, middle + size / 2]).round(1)
    return boxes, rng.random(n).round(2), rng.integers(0, 3, n)


@pytest.mark.parametrize("big_share", [0.0, 0.02])
def test_large_clustered_scene_matches_reference(big_share):
    boxes, scores, classes = clustered_scene(11, 3000, big_share)
    for threshold in (0.3, 0.75):
        np.testing.assert_array_equal(
            nms(boxes, scores, classes, threshold), nms_reference(boxes, scores, classes, threshold)
        )
    for options in ({}, {"method": "linear", "iou_threshold": 0.3}):
        kept, decayed = soft_nms(boxes, scores, classes, **options)
        ref_kept, ref_decayed = soft_nms_reference(boxes, scores, classes, **options)
        np.testing.assert_array_equal(kept, ref_kept)
        np.testing.assert_allclose(decayed, ref_decayed, rtol=1e-12, atol=0.0)


def test_large_scene_uses_the_coarse_grid_levels():
    # Guards the parity test above: with 2% big boxes the grid really runs more than one level.
    boxes, scores, classes = clustered_scene(11, 3000, 0.02)
    calls = []
    real = selection._pairs_in_cells

    def spy(*args, **kwargs):
        calls.append(kwargs["all_query"])
        return real(*args, **kwargs)

    with mock.patch.object(selection, "_pairs_in_cells", spy):
        nms(boxes, scores, classes)
    assert calls[0] is True and False in calls[1:]


@given(st.lists(st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, -1.0]) | st.floats(-1.0, 1.0), max_size=80))
def test_priority_order_is_descending_score_then_ascending_index(values):
    scores = np.array(values, dtype=float)
    expected = sorted(range(len(values)), key=lambda k: (-values[k], k))
    assert selection._priority_order(scores).tolist() == expected
