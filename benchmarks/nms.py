"""NMS / Soft-NMS timings beside lsnms and a shapely STRtree NMS, in one run; prints a table.

The peers live in the benchmark's own environment, never in the project's (lsnms needs numba)::

    benchmarks/setup.sh                      # once: builds benchmarks/.venv
    PYTHONPATH=$PWD benchmarks/.venv/bin/python benchmarks/nms.py [--sizes 10000 100000 1000000] [--repeat 3]

Two scenes per size: ``random`` (100 boxes per 512 px tile, 10-60 px, scattered) and ``clustered``
(tiled-inference output: objects in dense clumps, each seen 1-4 times with jitter, as overlapping tiles
report them). Times are the best of ``--repeat`` runs, since the machine is shared. Every method must keep
the same set as ours (lsnms suppresses at ``IoU >= t`` where osml uses ``>``; with float coordinates
that never differs here); ``same`` says whether it did. The O(N^2) reference runs up to ``--reference-max``.
Without lsnms (plain project venv) its column shows ``-``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import shapely

from airflow_provider_osml.selection import nms, nms_reference, soft_nms

try:
    import lsnms
except ImportError:  # the project venv: our columns only
    lsnms = None
try:
    from numba import njit
except ImportError:
    njit = None


# --- scenes ----------------------------------------------------------------------------------------


def random_boxes(n: int, seed: int = 0):
    """100 boxes per 512 px tile, 10-60 px wide, random scores, 3 classes."""
    rng = np.random.default_rng(seed)
    side = 512 * np.sqrt(n / 100)
    xy = rng.random((n, 2)) * side
    wh = rng.uniform(10, 60, size=(n, 2))
    return np.hstack([xy, xy + wh]), rng.random(n), rng.integers(0, 3, n)


def clustered_boxes(n: int, seed: int = 0):
    """Tiled-inference output: objects (8-40 px) in clumps of ~50, each reported 1-4 times with jitter."""
    rng = np.random.default_rng(seed)
    copies = rng.integers(1, 5, size=n)  # mean 2.5 reports per object
    objects = int(np.searchsorted(np.cumsum(copies), n)) + 1
    copies = copies[:objects]
    copies[-1] -= int(copies.sum()) - n
    clumps = max(objects // 50, 1)
    side = 512 * np.sqrt(n / 250)
    centre = rng.random((clumps, 2)) * side
    xy = centre[rng.integers(0, clumps, objects)] + rng.normal(0, 60, size=(objects, 2))
    wh = rng.uniform(8, 40, size=(objects, 2))
    cls = rng.integers(0, 3, objects)
    owner = np.repeat(np.arange(objects), copies)
    jitter = rng.normal(0, 1.5, size=(n, 4))
    boxes = np.hstack([xy[owner], xy[owner] + wh[owner]]) + jitter
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1.0)
    return boxes, rng.uniform(0.3, 1.0, n), cls[owner]


SCENES = {"random": random_boxes, "clustered": clustered_boxes}


# --- peers -----------------------------------------------------------------------------------------


def lsnms_nms(boxes, scores, classes, iou_threshold):
    return lsnms.nms(boxes, scores, iou_threshold=iou_threshold, score_threshold=0.0, class_ids=classes)


def _greedy(order, indptr, neighbours, n):
    keep = np.zeros(n, dtype=np.bool_)
    gone = np.zeros(n, dtype=np.bool_)
    for k in order:
        if gone[k]:
            continue
        keep[k] = True
        for e in range(indptr[k], indptr[k + 1]):
            gone[neighbours[e]] = True
    return keep


_greedy_jit = njit(cache=False)(_greedy) if njit else _greedy


def strtree_nms(boxes, scores, classes, iou_threshold):
    """SAHI's sparse path in ~20 lines: STRtree candidate pairs, vectorised IoU, CSR, greedy walk."""
    tree = shapely.STRtree(shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]))
    i, j = tree.query(tree.geometries)  # envelope test only: exact for axis-aligned boxes
    pair = (i < j) & (classes[i] == classes[j])
    i, j = i[pair], j[pair]
    w = np.minimum(boxes[i, 2], boxes[j, 2]) - np.maximum(boxes[i, 0], boxes[j, 0])
    h = np.minimum(boxes[i, 3], boxes[j, 3]) - np.maximum(boxes[i, 1], boxes[j, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    over = inter / (area[i] + area[j] - inter) > iou_threshold
    i, j = i[over], j[over]
    n = len(boxes)
    order = np.lexsort((np.arange(n), -scores))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    src, dst = np.where(rank[i] < rank[j], i, j), np.where(rank[i] < rank[j], j, i)
    by_src = np.argsort(src, kind="stable")
    indptr = np.concatenate(([0], np.cumsum(np.bincount(src, minlength=n))))
    keep = _greedy_jit(order, indptr, dst[by_src], n)
    return order[keep[order]]


# --- timing ----------------------------------------------------------------------------------------


def best_of(repeat: int, fn, *args, **kwargs):
    """Best wall time of ``repeat`` runs, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def warm_up(iou: float) -> None:
    """Compile the numba peers before anything is timed."""
    boxes, scores, classes = random_boxes(2_000)
    if lsnms is not None:
        lsnms_nms(boxes, scores, classes, iou)
    strtree_nms(boxes, scores, classes, iou)


def same(ours: np.ndarray, other: np.ndarray) -> str:
    return "yes" if np.array_equal(np.sort(ours), np.sort(np.asarray(other))) else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--scenes", nargs="+", choices=sorted(SCENES), default=["random", "clustered"])
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reference-max", type=int, default=10_000)
    args = parser.parse_args()
    warm_up(args.iou)

    header = (
        f"{'scene':<10}{'boxes':>9}{'kept':>9}{'nms s':>8}{'soft s':>8}{'lsnms s':>9}{'x lsnms':>8}"
        f"{'strtree s':>10}{'x strtree':>10}{'ref s':>8}{'same':>6}"
    )
    print(f"iou_threshold={args.iou}, best of {args.repeat}")
    print(header)
    print("-" * len(header))
    for scene in args.scenes:
        for n in args.sizes:
            boxes, scores, classes = SCENES[scene](n)
            ours_s, kept = best_of(args.repeat, nms, boxes, scores, classes, args.iou)
            soft_s, _ = best_of(args.repeat, soft_nms, boxes, scores, classes)
            checks = []
            ls_s = tree_s = ref_s = float("nan")
            if lsnms is not None:
                ls_s, ls_kept = best_of(args.repeat, lsnms_nms, boxes, scores, classes, args.iou)
                checks.append(same(kept, ls_kept))
            tree_s, tree_kept = best_of(args.repeat, strtree_nms, boxes, scores, classes, args.iou)
            checks.append(same(kept, tree_kept))
            if n <= args.reference_max:
                ref_s, ref_kept = best_of(1, nms_reference, boxes, scores, classes, args.iou)
                checks.append(same(kept, ref_kept))
            print(
                f"{scene:<10}{n:>9}{len(kept):>9}{ours_s:>8.3f}{soft_s:>8.3f}{_num(ls_s, 9)}"
                f"{_ratio(ls_s, ours_s, 8)}{_num(tree_s, 10)}{_ratio(tree_s, ours_s, 10)}{_num(ref_s, 8)}"
                f"{'yes' if all(c == 'yes' for c in checks) else 'NO':>6}",
                flush=True,
            )
    print("x peer = peer time / our NMS time (> 1: ours is faster)")


def _num(value: float, width: int) -> str:
    return f"{value:>{width}.3f}" if value == value else f"{'-':>{width}}"


def _ratio(peer: float, ours: float, width: int) -> str:
    return f"{peer / ours:>{width - 1}.2f}x" if peer == peer else f"{'-':>{width}}"


if __name__ == "__main__":
    main()
