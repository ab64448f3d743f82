"""NMS / Soft-NMS timings on random tile-like box sets; prints a table.

Peers (lsnms, an STRtree merge) come with the feature-selection issue; here the ratio is against our own simple
O(n^2) reference implementation, run only where it finishes in reasonable time.

    python benchmarks/nms.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from airflow_provider_osml.selection import nms, nms_reference, soft_nms


def tile_like_boxes(n: int, seed: int = 0):
    """100 boxes per 512 px tile, 10-60 px wide, random scores, 3 classes."""
    rng = np.random.default_rng(seed)
    side = 512 * np.sqrt(n / 100)
    xy = rng.random((n, 2)) * side
    wh = rng.uniform(10, 60, size=(n, 2))
    return np.hstack([xy, xy + wh]), rng.random(n), rng.integers(0, 3, n)


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    print(f"{'boxes':>10} {'nms s':>9} {'soft_nms s':>11} {'reference s':>12} {'ratio':>7}")
    for n in args.sizes:
        boxes, scores, classes = tile_like_boxes(n)
        fast = timed(nms, boxes, scores, classes, 0.75)
        soft = timed(soft_nms, boxes, scores, classes)
        ref = timed(nms_reference, boxes, scores, classes, 0.75) if n <= 10_000 else float("nan")
        ratio = f"{ref / fast:7.1f}" if ref == ref else "      -"
        print(f"{n:>10} {fast:9.3f} {soft:11.3f} {ref:12.3f} {ratio}")


if __name__ == "__main__":
    main()
