"""De-duplication of detections in tile and region overlaps: class-aware NMS and Soft-NMS (spec 4.5).

Array in, array out. ``boxes`` is ``(N, 4)`` ``[minx, miny, maxx, maxy]`` in full-image pixels, ``scores``
is ``(N,)`` and ``classes`` is ``(N,)`` labels (any hashable dtype; :func:`class_labels` turns iris into
ints). The functions return indices into the inputs.

Semantics follow the osml-model-runner selector (``ensemble_boxes_nms``, vendored from ensemble-boxes):

- class-aware: boxes only suppress or decay boxes with the same label;
- a zero width or height gets ``+0.1`` px on that side (osml 2.3.0+, PR #93), so point detections take part;
- IoU on plain areas (no ``+1`` pixel convention);
- NMS suppresses a box when its IoU with a kept, higher-ranked box is strictly greater than the threshold;
- Gaussian Soft-NMS ignores ``iou_threshold``, as upstream;
- Soft-NMS returns the **decayed** scores, where upstream returns the original ones (spec 11 Q4); the
  caller keeps the original as ``rawScore``.

Ties in score are broken by the lower index, so results are deterministic (upstream depends on
``argsort`` and swap order). The fast paths only compare boxes that overlap, found through a uniform grid
(multi-level when box sizes vary a lot), so the cost grows with the number of overlapping pairs rather
than ``N**2``. NMS with a threshold of 0.3 or more looks closer still: ``IoU > t`` bounds how far apart
two boxes' corners can be, so it only compares boxes whose corners share or neighbour a cell of that size. :func:`nms_reference` and :func:`soft_nms_reference` are the plain ``O(N**2)`` versions the
fast paths are tested against. Both share one IoU kernel and apply decays in the same order, so the
results match bit for bit.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import shapely

# osml 2.3.0+ (PR #93) widens zero-width or zero-height boxes by 0.1 px so that points have an area.
DEGENERATE_PAD = 0.1

# Up to this many boxes, testing all N*(N-1)/2 pairs is cheaper than building the grid. Overlap
# groups handed over by the tiling strategy are usually this small.
DENSE_MAX_BOXES = 128

# Grid cell = this quantile of the box sides: nearly every box then covers at most 2x2 cells, while a
# cell still holds only a handful of boxes. The few larger boxes go to coarser grid levels.
_CELL_QUANTILE = 0.95
# Each coarser grid level has cells this many times wider.
_LEVEL_GROWTH = 4.0
# Cap on cells per axis, which keeps the int64 cell keys far from overflow.
_MAX_CELLS_PER_AXIS = 2**20
# Bound for the int64 (class, cell) key; with more classes than fit, occupied keys are numbered instead.
_MAX_KEY = 2**62

# NMS finds its candidates by corner distance while the largest box side is at most this many times the
# 95th percentile; beyond, the multi-level overlap grid is cheaper.
_NMS_SPREAD = 4.0

# NMS resolves the suppression graph in vectorised rounds (every undecided box without an undecided
# higher-ranked neighbour is kept). Real scenes need a few rounds; long chains of overlapping boxes
# fall back to a sequential walk after this many.
_MAX_PEEL_ROUNDS = 32

# Soft-NMS also runs in vectorised rounds; components still unfinished after this many rounds are redone
# with the sequential heap loop.
_MAX_SOFT_ROUNDS = 64


class _Prepared(NamedTuple):
    boxes: np.ndarray  # (N, 4) float64, min <= max, zero sides padded
    area: np.ndarray  # (N,) float64
    scores: np.ndarray  # (N,) float64
    classes: np.ndarray  # (N,) int64 labels, small and non-negative
    geoms: np.ndarray | None  # (N,) shapely geometries, when polygon IoU is asked for
    geom_area: np.ndarray | None


def class_labels(iris: Sequence[str]) -> np.ndarray:
    """Map class names to ints, deterministically: the position of the name among the sorted unique names.

    Upstream numbers the labels in ``set()`` order, which changes from one process to the next.
    """
    names = list(iris)
    lookup = {name: label for label, name in enumerate(sorted(set(names)))}
    return np.fromiter((lookup[name] for name in names), dtype=np.int64, count=len(names))


def top_class(feature_classes: list[dict] | None) -> tuple[str, float]:
    """The highest-scoring ``featureClasses`` entry as ``(iri, score)``; ``("", -1.0)`` when there is none.

    Same rule as upstream ``_get_category_and_score_from_feature``: start at ``-1.0`` and take an entry
    only when its score is strictly higher, so the first of equal scores wins. Entries without a score
    are skipped (upstream raises ``TypeError``).
    """
    best_iri, best_score = "", -1.0
    for feature_class in feature_classes or []:
        score = feature_class.get("score") if isinstance(feature_class, dict) else None
        if score is not None and float(score) > best_score:
            best_iri, best_score = str(feature_class.get("iri") or ""), float(score)
    return best_iri, best_score


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float = 0.75,
    *,
    polygons: Sequence[shapely.Geometry] | None = None,
) -> np.ndarray:
    """Class-aware greedy non-maximum suppression.

    Args:
        boxes: ``(N, 4)`` ``[minx, miny, maxx, maxy]``. With ``polygons`` they must enclose the polygons
            (usually their bounds): only pairs whose boxes overlap are compared.
        scores: ``(N,)`` confidences.
        classes: ``(N,)`` labels; boxes of different labels never suppress each other.
        iou_threshold: a box is dropped when its IoU with a kept box of its class is strictly greater.
        polygons: optional geometries; IoU is then computed on them (boxes for zero-area geometries).

    Returns:
        Kept indices, by descending score, ties by ascending index.
    """
    _check_threshold(iou_threshold)
    prep = _prepare(boxes, scores, classes, polygons)
    n = len(prep.scores)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    if polygons is None and n > DENSE_MAX_BOXES and (found := _nms_candidates(prep, iou_threshold)) is not None:
        i, j, inter = found
    else:
        i, j, inter = _pairs_and_intersections(prep.boxes, prep.classes)
    over = _iou(prep, i, j, inter) > iou_threshold
    i, j = i[over], j[over]

    order = _priority_order(prep.scores)
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n)
    forward = rank[i] < rank[j]
    keep = _greedy_keep(n, rank, np.where(forward, i, j), np.where(forward, j, i))
    return order[keep[order]]


def soft_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    *,
    sigma: float = 0.1,
    skip_box_threshold: float = 0.0001,
    method: Literal["gaussian", "linear"] = "gaussian",
    iou_threshold: float = 0.75,
    polygons: Sequence[shapely.Geometry] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-aware Soft-NMS: repeatedly take the box with the highest current score and decay its neighbours.

    Gaussian decay is ``s *= exp(-iou**2 / sigma)`` (``iou_threshold`` unused, as upstream); linear decay is
    ``s *= 1 - iou`` only where ``iou > iou_threshold``. Boxes whose decayed score is
    ``> skip_box_threshold`` are kept.

    Returns:
        ``(kept indices, their decayed scores)``, by descending decayed score, ties by ascending index.
    """
    _check_soft_options(sigma, method, iou_threshold)
    prep = _prepare(boxes, scores, classes, polygons)
    i, j, inter = _pairs_and_intersections(prep.boxes, prep.classes)
    factor = _decay_factors(_iou(prep, i, j, inter), sigma, method, iou_threshold)
    # A factor of exactly 1.0 changes nothing, so that pair needs no bookkeeping.
    live = factor != 1.0
    i, j, factor = i[live], j[live], factor[live]

    current = _soft_decay(prep.scores, i, j, factor)
    kept = np.flatnonzero(current > skip_box_threshold)
    kept = kept[_priority_order(current[kept])]
    return kept, current[kept]


def nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float = 0.75,
    *,
    polygons: Sequence[shapely.Geometry] | None = None,
) -> np.ndarray:
    """Plain ``O(N**2)`` version of :func:`nms`, for tests and benchmarks."""
    _check_threshold(iou_threshold)
    prep = _prepare(boxes, scores, classes, polygons)
    score_list = prep.scores.tolist()
    done = np.zeros(len(score_list), dtype=bool)
    kept: list[int] = []
    for k in sorted(range(len(score_list)), key=lambda m: (-score_list[m], m)):
        if done[k]:
            continue
        kept.append(k)
        done[k] = True
        others = np.flatnonzero(~done & (prep.classes == prep.classes[k]))
        done[others[_iou(prep, np.full(len(others), k), others) > iou_threshold]] = True
    return np.asarray(kept, dtype=np.intp)


def soft_nms_reference(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    *,
    sigma: float = 0.1,
    skip_box_threshold: float = 0.0001,
    method: Literal["gaussian", "linear"] = "gaussian",
    iou_threshold: float = 0.75,
    polygons: Sequence[shapely.Geometry] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plain ``O(N**2)`` version of :func:`soft_nms`, for tests and benchmarks."""
    _check_soft_options(sigma, method, iou_threshold)
    prep = _prepare(boxes, scores, classes, polygons)
    current = prep.scores.copy()
    done = np.zeros(len(current), dtype=bool)
    for _ in range(len(current)):
        remaining = np.flatnonzero(~done)
        k = remaining[np.argmax(current[remaining])]  # argmax returns the first, i.e. lowest index, of ties
        done[k] = True
        others = np.flatnonzero(~done & (prep.classes == prep.classes[k]))
        iou = _iou(prep, np.full(len(others), k), others)
        current[others] *= _decay_factors(iou, sigma, method, iou_threshold)
    kept = np.flatnonzero(current > skip_box_threshold)
    kept = np.asarray(sorted(kept.tolist(), key=lambda m: (-current[m], m)), dtype=np.intp)
    return kept, current[kept]


# --- shared kernels -------------------------------------------------------------------------------


def _check_threshold(iou_threshold: float) -> None:
    # The fast paths only look at overlapping pairs, which is exact for thresholds >= 0.
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be within [0, 1], got {iou_threshold}")


def _check_soft_options(sigma: float, method: str, iou_threshold: float) -> None:
    _check_threshold(iou_threshold)
    if method not in ("gaussian", "linear"):
        raise ValueError(f"method must be 'gaussian' or 'linear', got {method!r}")
    if not sigma > 0.0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


def _prepare(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    polygons: Sequence[shapely.Geometry] | None,
) -> _Prepared:
    raw = np.asarray(boxes, dtype=np.float64)
    if raw.size == 0:
        raw = raw.reshape(0, 4)
    if raw.ndim != 2 or raw.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) [minx, miny, maxx, maxy], got shape {raw.shape}")
    score_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    class_arr = np.asarray(classes).reshape(-1)
    n = len(raw)
    if len(score_arr) != n or len(class_arr) != n:
        raise ValueError(
            f"boxes, scores and classes differ in length: {n}, {len(score_arr)}, {len(class_arr)}"
        )
    if not (np.isfinite(raw).all() and np.isfinite(score_arr).all()):
        raise ValueError("boxes and scores must be finite")
    # Swapped corners are put back in order, as ensemble-boxes' prepare_boxes does.
    x1, x2 = np.minimum(raw[:, 0], raw[:, 2]), np.maximum(raw[:, 0], raw[:, 2])
    y1, y2 = np.minimum(raw[:, 1], raw[:, 3]), np.maximum(raw[:, 1], raw[:, 3])
    x2 = np.where(x1 == x2, x2 + DEGENERATE_PAD, x2)
    y2 = np.where(y1 == y2, y2 + DEGENERATE_PAD, y2)
    prepared = np.stack([x1, y1, x2, y2], axis=1)
    if class_arr.dtype.kind in "iu" and n and 0 <= class_arr.min() and class_arr.max() < 4 * n + 64:
        labels = class_arr.astype(np.int64)  # already small ints: only equality matters, skip the sort
    else:
        labels = np.unique(class_arr, return_inverse=True)[1].reshape(-1).astype(np.int64)

    geoms = geom_area = None
    if polygons is not None:
        if len(polygons) != n:
            raise ValueError(f"got {len(polygons)} polygons for {n} boxes")
        geoms = np.empty(n, dtype=object)
        geoms[:] = list(polygons)
        geom_area = shapely.area(geoms)
    return _Prepared(prepared, (x2 - x1) * (y2 - y1), score_arr, labels, geoms, geom_area)


def _iou(prep: _Prepared, i: np.ndarray, j: np.ndarray, inter: np.ndarray | None = None) -> np.ndarray:
    """IoU of the pairs ``(i[k], j[k])``. Symmetric to the last bit, so every caller gets the same numbers.

    ``inter``: the box intersection areas when the caller has them already (same arithmetic, same bits).
    """
    if inter is None:
        b = prep.boxes
        w = np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0])
        h = np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1])
        inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    union = prep.area[i] + prep.area[j] - inter
    # union is 0 only when tiny boxes underflow; call that no overlap instead of NaN.
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0.0)
    if prep.geoms is not None and len(i):
        # Geometry operations are evaluated in index order, so (i, j) and (j, i) give the same area.
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        # Points and lines keep the box IoU; they have no area to compare.
        solid = (inter > 0.0) & (prep.geom_area[lo] > 0.0) & (prep.geom_area[hi] > 0.0)
        if solid.any():
            lo, hi = lo[solid], hi[solid]
            g_inter = shapely.area(shapely.intersection(prep.geoms[lo], prep.geoms[hi]))
            g_union = prep.geom_area[lo] + prep.geom_area[hi] - g_inter
            iou[solid] = np.divide(g_inter, g_union, out=np.zeros_like(g_inter), where=g_union > 0.0)
        # GEOS rounding can push the ratio a hair above 1; keep linear decay factors within [0, 1].
        np.minimum(iou, 1.0, out=iou)
    return iou


def _decay_factors(iou: np.ndarray, sigma: float, method: str, iou_threshold: float) -> np.ndarray:
    if method == "linear":
        return np.where(iou > iou_threshold, 1.0 - iou, 1.0)
    # math.exp, not np.exp: numpy's SIMD exp may differ by an ulp depending on array length, and the fast
    # and reference paths must agree bit for bit to pick boxes in the same order.
    return np.array(list(map(math.exp, (-(iou * iou) / sigma).tolist())), dtype=np.float64)


def _priority_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by ascending index.

    A quicksort, then only the runs of equal scores are put in index order: much cheaper than a stable
    sort of all scores when few are tied.
    """
    order = np.argsort(-scores)
    ranked = scores[order]
    tied = ranked[1:] == ranked[:-1]
    if tied.any():
        run = np.cumsum(np.concatenate(([True], ~tied)))
        member = np.concatenate((tied, [False])) | np.concatenate(([False], tied))
        sub = order[member]
        order[member] = sub[np.lexsort((sub, run[member]))]
    return order


# --- candidate pairs ------------------------------------------------------------------------------


def _overlapping_pairs(boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` of the same class whose boxes overlap with a positive area."""
    i, j, _ = _pairs_and_intersections(boxes, classes)
    return i, j


def _pairs_and_intersections(
    boxes: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_overlapping_pairs` and the intersection area of each pair, which the overlap test computes."""
    n = len(boxes)
    if n < 2:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp), np.empty(0, dtype=np.float64)
    if n <= DENSE_MAX_BOXES:
        i, j = np.triu_indices(n, k=1)
        same = classes[i] == classes[j]
        i, j = i[same], j[same]
        keep, inter = _overlaps(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], i, j)
        return i[keep], j[keep], inter
    return _grid_pairs(boxes, classes)


def _overlaps(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, p: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the pairs ``(p, q)`` that overlap with a positive area, and those areas.

    Strict: a positive intersection area is exactly what makes the IoU positive. The area is computed
    as :func:`_iou` does, so handing it on changes no bit.
    """
    w = np.minimum(x2[p], x2[q]) - np.maximum(x1[p], x1[q])
    h = np.minimum(y2[p], y2[q]) - np.maximum(y1[p], y1[q])
    ok = (w > 0.0) & (h > 0.0)
    return ok, w[ok] * h[ok]


def _grid_pairs(boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping same-class pairs through a multi-level uniform grid.

    A box lives on the finest level whose cells are at least as wide as its longer side, so it covers at
    most 2x2 cells there. A pair is found on the level of its larger box, where the smaller box is inserted
    too. Every box covers the cell holding the top-left corner of the intersection of two overlapping boxes
    (floor is monotonic), and the pair is reported from that cell only, so it is found exactly once.
    """
    origin = boxes[:, :2].min(axis=0)
    extent = float(max((boxes[:, 2:] - origin).max(), 0.0))
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cell = float(np.quantile(side, _CELL_QUANTILE))
    if side.max() <= 2.0 * cell:
        cell = float(side.max())  # sizes are even enough for a single level
    cell = max(cell, extent / _MAX_CELLS_PER_AXIS, 1e-300)

    level = np.zeros(len(boxes), dtype=np.int64)
    big = side > cell
    if big.any():
        level[big] = np.ceil(np.log(side[big] / cell) / math.log(_LEVEL_GROWTH)).astype(np.int64)
        # Correct the rare off-by-one of the float log, so each box fits its level's cell.
        while (short := side > cell * _LEVEL_GROWTH**level).any():
            level[short] += 1

    found_i, found_j, found_inter = [], [], []
    levels = np.unique(level).tolist()
    for lvl in levels:
        members = np.flatnonzero(level <= lvl)
        a, b, inter = _pairs_in_cells(
            boxes[members],
            classes[members],
            (origin, cell * _LEVEL_GROWTH**lvl),
            level[members] == lvl,
            all_query=lvl == levels[0],
        )
        found_i.append(members[a])
        found_j.append(members[b])
        found_inter.append(inter)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    return np.minimum(i, j), np.maximum(i, j), np.concatenate(found_inter)


def _pairs_in_cells(
    boxes: np.ndarray,
    classes: np.ndarray,
    grid: tuple[np.ndarray, float],
    is_query: np.ndarray,
    *,
    all_query: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlapping same-class pairs ``(a, b)`` (local indices) with at least one query box, each pair once,
    and their intersection areas."""
    origin, size = grid
    kx1, ky1, kx2, ky2 = np.floor((boxes - np.tile(origin, 2)) / size).astype(np.int64).T
    nx, ny = kx2 - kx1 + 1, ky2 - ky1 + 1

    # One entry per (box, covered cell). Boxes fit their cell, so nx, ny <= 3 (2 but for rounding).
    owner, ex, ey, first_x, first_y = [], [], [], [], []
    for dx in range(int(nx.max())):
        for dy in range(int(ny.max())):
            m = np.flatnonzero((nx > dx) & (ny > dy))
            owner.append(m)
            ex.append(kx1[m] + dx)
            ey.append(ky1[m] + dy)
            first_x.append(np.full(len(m), dx == 0))
            first_y.append(np.full(len(m), dy == 0))
    owner, ex, ey = np.concatenate(owner), np.concatenate(ex), np.concatenate(ey)
    first_x, first_y = np.concatenate(first_x), np.concatenate(first_y)

    width, height = int(ex.max()) + 1, int(ey.max()) + 1
    n_classes = int(classes.max()) + 1
    if n_classes * width * height < _MAX_KEY:
        key = classes[owner] * (width * height) + ex * height + ey
    else:  # too many classes for one int64 key: number the occupied (class, cell) pairs instead
        rows = np.stack((classes[owner], ex * height + ey), axis=1)
        key = np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)
    if not all_query:
        # Coarse levels hold few query boxes: keep only the cells they occupy.
        wanted = np.unique(key[is_query[owner]])
        at = np.minimum(np.searchsorted(wanted, key), len(wanted) - 1)
        inside = wanted[at] == key
        owner, key, first_x, first_y = owner[inside], key[inside], first_x[inside], first_y[inside]
    order = np.argsort(key)
    owner, key, first_x, first_y = owner[order], key[order], first_x[order], first_y[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(col) for col in boxes[owner].T)

    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    sizes = np.diff(np.append(starts, len(key)))
    pos = np.arange(len(key))
    ends = np.repeat(starts + sizes, sizes)

    def accept(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Report from the top-left cell of the intersection: one of the two entries is in its box's first
        # column and one in its first row. The cheap flag test first, then the exact overlap test.
        home = (first_x[p] | first_x[q]) & (first_y[p] | first_y[q])
        p, q = p[home], q[home]
        ok, inter = _overlaps(x1, y1, x2, y2, p, q)
        return p[ok], q[ok], inter

    found_p, found_q = [np.empty(0, dtype=np.intp)], [np.empty(0, dtype=np.intp)]
    found_inter = [np.empty(0, dtype=np.float64)]
    if all_query:
        # Pair each entry with the entry d places later in its cell, for d = 1, 2, ...: contiguous memory,
        # and the work is the number of candidate pairs.
        later = ends - pos - 1
        p = np.flatnonzero(later > 0)
        d = 1
        while len(p):
            a, b, inter = accept(p, p + d)
            found_p.append(a)
            found_q.append(b)
            found_inter.append(inter)
            p = p[later[p] > d]
            d += 1
    else:
        # Query entries meet every entry of their cell; two query entries meet once, from the earlier.
        p = np.flatnonzero(is_query[owner])
        first, take = starts[np.searchsorted(starts, p, side="right") - 1], ends[p]
        take = take - first
        p = np.repeat(p, take)
        q = np.repeat(first - np.cumsum(take) + take, take) + np.arange(int(take.sum()))
        other = (q > p) | ~is_query[owner[q]]
        p, q = p[other], q[other]
        a, b, inter = accept(p, q)
        found_p.append(a)
        found_q.append(b)
        found_inter.append(inter)
    p, q = np.concatenate(found_p), np.concatenate(found_q)
    return owner[p], owner[q], np.concatenate(found_inter)


# --- NMS candidates by corner distance -------------------------------------------------------------


def _nms_candidates(
    prep: _Prepared, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Overlapping same-class pairs that may have ``IoU > iou_threshold``: a superset of them, each once.

    ``IoU > t`` needs an intersection wider than ``t * max(w_a, w_b)``, so the left edges differ by less
    than ``(1 - t) * max(w_a, w_b)`` (likewise for tops). With ``c`` = that bound for the largest box,
    such pairs have their top-left corners in the same or in adjacent cells of a ``c`` grid. One entry
    per box (not one per covered cell), and cells shrink as the threshold grows: far fewer candidates
    than all overlapping pairs. ``None`` when the grid would not pay off (low threshold, uneven sizes).
    """
    boxes = prep.boxes
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    largest = float(side.max())
    if iou_threshold < 0.3 or largest > _NMS_SPREAD * float(np.quantile(side, _CELL_QUANTILE)):
        return None
    origin = boxes[:, :2].min(axis=0)
    extent = float(max((boxes[:, :2] - origin).max(), 0.0))
    # A little wider than the exact bound, so float rounding in the IoU can never miss a pair.
    cell = max((1.0 - iou_threshold) * largest * (1.0 + 1e-6), extent / _MAX_CELLS_PER_AXIS, 1e-300)
    kx, ky = (np.floor((boxes[:, :2] - origin) / cell).astype(np.int64) + 1).T  # 1.. : room for -1
    height = int(ky.max()) + 2
    width = int(kx.max()) + 2
    n_classes = int(prep.classes.max()) + 1
    if n_classes * width * height >= _MAX_KEY:
        return None
    key = prep.classes * (width * height) + kx * height + ky
    if int(key.max()) < 2**31:
        key = key.astype(np.int32)  # sorts faster
    order = np.argsort(key)  # the order inside a cell does not matter: pairs come out as (min, max)
    key = key[order]
    x1, y1, x2, y2 = (np.ascontiguousarray(col) for col in boxes[order].T)
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    sizes = np.diff(np.append(starts, len(key)))
    cell_keys = key[starts]
    cell_of = np.repeat(np.arange(len(starts)), sizes)
    pos = np.arange(len(key))

    found_p, found_q = [np.empty(0, dtype=np.intp)], [np.empty(0, dtype=np.intp)]
    found_inter = [np.empty(0, dtype=np.float64)]

    def test(p: np.ndarray, q: np.ndarray) -> None:
        ok, inter = _overlaps(x1, y1, x2, y2, p, q)
        found_p.append(p[ok])
        found_q.append(q[ok])
        found_inter.append(inter)

    # Same cell: each entry with the entry d places later, for d = 1, 2, ...
    later = np.repeat(starts + sizes, sizes) - pos - 1
    p = np.flatnonzero(later > 0)
    d = 1
    while len(p):
        test(p, p + d)
        p = p[later[p] > d]
        d += 1
    # Half of the 8 neighbour cells, so each pair of cells is visited once. The padding row and column
    # keep the neighbours of a cell inside its class block.
    for dx, dy in ((1, -1), (1, 0), (1, 1), (0, 1)):
        wanted = cell_keys + dx * height + dy
        at = np.minimum(np.searchsorted(cell_keys, wanted), len(cell_keys) - 1)
        hit = cell_keys[at] == wanted
        if not hit.any():
            continue
        partner = np.where(hit, at, 0)
        take = np.where(hit, sizes[partner], 0)[cell_of]  # per entry: entries of the neighbour cell
        p = np.repeat(pos, take)
        first = starts[partner][cell_of]
        q = np.repeat(first - np.cumsum(take) + take, take) + np.arange(int(take.sum()))
        test(p, q)
    p, q = np.concatenate(found_p), np.concatenate(found_q)
    i, j = order[p], order[q]
    return np.minimum(i, j), np.maximum(i, j), np.concatenate(found_inter)


# --- greedy resolution ----------------------------------------------------------------------------


def _greedy_keep(n: int, rank: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Greedy NMS over the suppression graph: ``src`` outranks ``dst`` and suppresses it if kept."""
    keep = np.ones(n, dtype=bool)
    undecided = np.zeros(n, dtype=bool)
    undecided[src] = True
    undecided[dst] = True
    for _ in range(_MAX_PEEL_ROUNDS):
        if len(src) == 0:
            break
        blocked = np.zeros(n, dtype=bool)
        blocked[dst] = True
        # No undecided box outranks these; any kept one already suppressed them, so they are kept.
        fresh = undecided & ~blocked
        undecided[fresh] = False
        lost = dst[fresh[src]]
        keep[lost] = False
        undecided[lost] = False
        alive = undecided[src] & undecided[dst]
        src, dst = src[alive], dst[alive]
    if len(src) == 0:
        return keep
    # Long chains: walk the rest in rank order.
    by_rank = np.argsort(rank[src], kind="stable")
    src, dst = src[by_rank], dst[by_rank]
    heads = np.flatnonzero(np.concatenate(([True], src[1:] != src[:-1])))
    tails = np.append(heads[1:], len(src))
    for u, start, stop in zip(src[heads].tolist(), heads.tolist(), tails.tolist(), strict=True):
        if keep[u]:
            keep[dst[start:stop]] = False
    return keep


def _soft_decay(scores: np.ndarray, i: np.ndarray, j: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Scores after Soft-NMS, where boxes ``i[k]`` and ``j[k]`` decay each other by ``factor[k]``."""
    if len(i) == 0:
        return scores.copy()
    if (scores[i] < 0.0).any() or (scores[j] < 0.0).any():
        # Decay raises a negative score, so picks no longer come in score order and the rounds do not
        # apply. Upstream gives -1.0 to features without featureClasses; this path is exact, only slower.
        return _soft_decay_sequential(scores, i, j, factor)
    decayed, unfinished = _soft_decay_rounds(scores, i, j, factor)
    if unfinished.any():
        redo = _components(unfinished, i, j)
        inside = redo[i]
        decayed[redo] = _soft_decay_sequential(scores, i[inside], j[inside], factor[inside])[redo]
    return decayed


def _soft_decay_rounds(
    scores: np.ndarray, i: np.ndarray, j: np.ndarray, factor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS in vectorised rounds, for non-negative scores and factors in ``[0, 1]``.

    Each round takes every box whose current score beats all its undecided neighbours (ties: lower index).
    The sequential loop would take that box before any of those neighbours, since scores only go down,
    so the result is the same. The sequential loop takes boxes by descending score (ties: lower index),
    so a box's decays are multiplied in that order of their sources to match it bit for bit.

    Returns:
        The decayed scores and a mask of boxes still undecided after ``_MAX_SOFT_ROUNDS`` rounds.
    """
    n = len(scores)
    current = scores.copy()
    undecided = np.zeros(n, dtype=bool)
    undecided[i] = True
    undecided[j] = True
    a, b, f = i, j, factor  # edges between undecided boxes
    got_v = got_u = np.empty(0, dtype=np.intp)  # decays received by undecided boxes: target, source, factor
    got_f = np.empty(0, dtype=np.float64)
    last_source = np.full(n, -1, dtype=np.intp)  # source of the last decay multiplied in, per box
    for _ in range(_MAX_SOFT_ROUNDS):
        if not undecided.any():
            break
        a_wins = (current[a] > current[b]) | ((current[a] == current[b]) & (a < b))
        beaten = np.zeros(n, dtype=bool)
        beaten[b[a_wins]] = True
        beaten[a[~a_wins]] = True
        taken = undecided & ~beaten
        undecided[taken] = False

        from_a, from_b = taken[a], taken[b]
        targets = np.concatenate((b[from_a], a[from_b]))
        sources = np.concatenate((a[from_a], b[from_b]))
        new_f = np.concatenate((f[from_a], f[from_b]))
        got_v = np.concatenate((got_v, targets))
        got_u = np.concatenate((got_u, sources))
        got_f = np.concatenate((got_f, new_f))
        alive = undecided[a] & undecided[b]
        a, b, f = a[alive], b[alive], f[alive]
        waiting = undecided[got_v]  # decays of boxes taken by now are no longer needed
        got_v, got_u, got_f = got_v[waiting], got_u[waiting], got_f[waiting]
        if len(targets) == 0:
            continue

        # Usual case: one new decay, from a source taken after all earlier ones; multiply it in.
        prev = last_source[targets]
        later = (
            (prev < 0)
            | (current[sources] < current[prev])
            | ((current[sources] == current[prev]) & (sources > prev))
        )
        simple = later & (np.bincount(targets, minlength=n)[targets] == 1)
        current[targets[simple]] *= new_f[simple]
        last_source[targets[simple]] = sources[simple]
        # Otherwise recompute s * f1 * f2 * ... with the sources in the order they were taken.
        redo = np.zeros(n, dtype=bool)
        redo[targets[~simple]] = True
        if redo.any():
            mine = redo[got_v]
            redo_at = np.flatnonzero(redo)
            current[redo_at], last_source[redo_at] = _ordered_products(
                scores, current, got_v[mine], got_u[mine], got_f[mine], redo_at
            )
    return current, undecided


def _ordered_products(
    scores: np.ndarray, current: np.ndarray, v: np.ndarray, u: np.ndarray, f: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``scores[t] * f1 * f2 * ...`` per target ``t`` (sorted), sources by descending score, then index.

    Returns:
        The products and the last source multiplied in, per target.
    """
    order = np.lexsort((u, -current[u], v))
    v, u, f = v[order], u[order], f[order]
    group = np.searchsorted(targets, v)
    starts = np.flatnonzero(np.concatenate(([True], v[1:] != v[:-1])))
    sizes = np.diff(np.append(starts, len(v)))
    position = np.arange(len(v)) - np.repeat(starts, sizes)
    product = scores[targets].copy()
    by_position = np.argsort(position, kind="stable")
    offset = 0
    for count in np.bincount(position).tolist():
        step = by_position[offset : offset + count]  # at most one decay per target
        offset += count
        product[group[step]] *= f[step]
    return product, u[starts + sizes - 1]


def _components(seeds: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mask of the boxes connected to a ``seeds`` box through the pairs ``(i, j)`` (breadth-first)."""
    n = len(seeds)
    u, v = np.concatenate((i, j)), np.concatenate((j, i))
    by_node = np.argsort(u, kind="stable")
    neighbours = v[by_node].tolist()
    bounds = np.concatenate(([0], np.cumsum(np.bincount(u, minlength=n)))).tolist()
    reached = seeds.copy()
    queue = np.flatnonzero(seeds).tolist()
    while queue:
        k = queue.pop()
        for m in neighbours[bounds[k] : bounds[k + 1]]:
            if not reached[m]:
                reached[m] = True
                queue.append(m)
    return reached


def _soft_decay_sequential(
    current: np.ndarray, i: np.ndarray, j: np.ndarray, factor: np.ndarray
) -> np.ndarray:
    """Run Soft-NMS on the boxes touched by the pairs ``(i, j)``, with a lazy max-heap of current scores.

    The decays are applied in the same order as the reference loop, so the scores match bit for bit.
    """
    n = len(current)
    u = np.concatenate((i, j))
    v = np.concatenate((j, i))
    f = np.concatenate((factor, factor))
    by_node = np.argsort(u, kind="stable")
    neighbours, factors = v[by_node].tolist(), f[by_node].tolist()
    bounds = np.concatenate(([0], np.cumsum(np.bincount(u, minlength=n)))).tolist()

    score = current.tolist()
    heap = [(-score[k], k) for k in np.unique(u).tolist()]
    heapq.heapify(heap)
    done = bytearray(n)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        neg, k = pop(heap)
        if done[k] or -neg != score[k]:
            continue  # stale entry: this box was decayed after it was pushed
        done[k] = 1
        for e in range(bounds[k], bounds[k + 1]):
            m = neighbours[e]
            if not done[m]:
                score[m] *= factors[e]
                push(heap, (-score[m], m))
    return np.asarray(score, dtype=np.float64)
