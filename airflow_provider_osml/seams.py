"""Objects cut by tile seams: one feature per object, however the tiles cut it.

A detection that touches an inner edge of its tile (not the image border) is a fragment of a cut object.

- In the tile (``screen_tile_features``): a fragment that another tile contains whole is dropped, since that
  tile sees the object whole; the other fragments are tagged with their tile window.
- At selection (``resolve_fragments``): a tagged fragment is dropped when a whole detection of the same
  class from another tile matches it inside its tile; fragments of one object from different tiles (an
  object larger than the tile overlap, which no tile sees whole) are merged into one feature with the
  union box, the merged polygon and the best score.

Fragments "match" when they agree where both tiles see the object: their boxes clipped to the common
window have an IoU of at least ``MATCH_IOU``. The reference instead keeps a truncated copy whenever its IoU
with the whole box is at or below the NMS threshold, so the same object came out twice.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from airflow_provider_osml import features as feats
from airflow_provider_osml.selection import top_class

# Private property of a fragment: the window [col, row, width, height] of the tile that cut it.
# Removed before output.
SEAM_TILE = "osmlSeamTile"

# Two views of one object agree at least this much inside the window both tiles see.
MATCH_IOU = 0.5


def screen_tile_features(
    features: list[dict], tile: Sequence[int], all_tiles: np.ndarray, bounds: Sequence[int]
) -> list[dict]:
    """One tile's features without the truncated copies other tiles see whole; other fragments tagged."""
    kept = []
    for feature in features:
        bbox = feats.image_bbox(feature)
        if not touches_inner_edge(np.asarray([bbox]), tile, bounds)[0]:
            kept.append(feature)
        elif not feats.is_truncated_copy(bbox, tile, all_tiles, bounds):
            feature["properties"][SEAM_TILE] = [int(v) for v in tile]
            kept.append(feature)
    return kept


def touches_inner_edge(boxes: np.ndarray, tile: Sequence[float], bounds: Sequence[float]) -> np.ndarray:
    """Per box ``[minx, miny, maxx, maxy]``: touches an edge of ``tile`` that is not the processing border."""
    tol = feats.EDGE_TOLERANCE
    left, top = tile[0], tile[1]
    right, bottom = left + tile[2], top + tile[3]
    return (
        ((boxes[:, 0] <= left + tol) & (left > bounds[0]))
        | ((boxes[:, 1] <= top + tol) & (top > bounds[1]))
        | ((boxes[:, 2] >= right - tol) & (right < bounds[2]))
        | ((boxes[:, 3] >= bottom - tol) & (bottom < bounds[3]))
    )


def crosses_tile_edges(boxes: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """Per box: some tile edge line passes through it. Only such boxes can be another tile's whole view
    of a cut object, so only they are compared with fragments."""
    edges_x = np.unique(np.concatenate((tiles[:, 0], tiles[:, 0] + tiles[:, 2])))
    edges_y = np.unique(np.concatenate((tiles[:, 1], tiles[:, 1] + tiles[:, 3])))
    tol = feats.EDGE_TOLERANCE
    in_x = np.searchsorted(edges_x, boxes[:, 0] - tol, side="left") < np.searchsorted(
        edges_x, boxes[:, 2] + tol, side="right"
    )
    in_y = np.searchsorted(edges_y, boxes[:, 1] - tol, side="left") < np.searchsorted(
        edges_y, boxes[:, 3] + tol, side="right"
    )
    return in_x | in_y


def resolve_fragments(
    boxes: np.ndarray, classes: np.ndarray, windows: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Which fragments to drop and which to merge.

    Args:
        boxes: ``(N, 4)`` candidate boxes (fragments and the whole detections that cross tile edges).
        classes: ``(N,)`` labels.
        windows: ``(N, 4)`` tile window ``[col, row, width, height]`` of each fragment; NaN for whole ones.

    Returns:
        A mask of the fragments a whole detection replaces, and groups (index arrays, two or more) of
        fragments that are one object. Dropped fragments are in no group.
    """
    from airflow_provider_osml.selection import _overlapping_pairs

    n = len(boxes)
    fragment = ~np.isnan(windows[:, 0])
    if n < 2 or not fragment.any():
        return np.zeros(n, dtype=bool), []
    i, j = _overlapping_pairs(np.asarray(boxes, dtype=float), np.asarray(classes))
    # Put a fragment first in each pair; pairs of two whole detections are NMS's business.
    swap = ~fragment[i]
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    keep = fragment[i]
    i, j = i[keep], j[keep]

    both = fragment[j]
    # Whole partner: it must reach outside the fragment's tile, i.e. see past the cut.
    tile = _corners(windows[i])
    whole = ~both & ~_inside(boxes[j], tile)
    replaced = np.zeros(n, dtype=bool)
    wi, wj = i[whole], j[whole]
    match = _clipped_iou(boxes[wi], boxes[wj], _corners(windows[wi])) >= MATCH_IOU
    replaced[wi[match]] = True

    # Two fragments from different tiles: compare them where both tiles see.
    fi, fj = i[both], j[both]
    common = _intersect(_corners(windows[fi]), _corners(windows[fj]))
    differ = (windows[fi] != windows[fj]).any(axis=1) & (common[:, 2] > common[:, 0]) & (common[:, 3] > common[:, 1])
    fi, fj, common = fi[differ], fj[differ], common[differ]
    match = _clipped_iou(boxes[fi], boxes[fj], common) >= MATCH_IOU
    fi, fj = fi[match], fj[match]
    alive = ~replaced[fi] & ~replaced[fj]
    return replaced, _groups(n, fi[alive], fj[alive])


def merge_fragments(group: Sequence[dict]) -> dict:
    """One feature for the fragments of one object: the best-scoring fragment's properties, the union box
    and the merged polygon. ``geometry`` (lon/lat) is cleared: the caller geolocates the merged shape."""
    best = max(group, key=lambda f: top_class(f["properties"].get("featureClasses"))[1])
    merged = copy.deepcopy(best)
    properties = merged["properties"]
    shapes = [_pixel_shape(f) for f in group]
    union = shapely.union_all(shapes)
    if not isinstance(union, shapely.Polygon):
        union = union.convex_hull  # fragments that only touch: keep one outline
    minx, miny, maxx, maxy = (float(v) for v in union.bounds)
    if properties.get("imageGeometry") is not None:
        properties["imageGeometry"] = mapping(shapely.set_precision(union, 1e-6))
    properties["imageBBox"] = [minx, miny, maxx, maxy]
    properties.pop(SEAM_TILE, None)
    merged["geometry"] = None
    merged.pop("bbox", None)
    return merged


def _pixel_shape(feature: dict):
    properties = feature["properties"]
    if properties.get("imageGeometry") is not None:
        geometry = shape(properties["imageGeometry"])
        if isinstance(geometry, shapely.Polygon | shapely.MultiPolygon) and geometry.area > 0:
            return geometry.buffer(0) if not geometry.is_valid else geometry
    return shapely.box(*feats.image_bbox(feature))


def _corners(windows: np.ndarray) -> np.ndarray:
    return np.column_stack((windows[:, 0], windows[:, 1], windows[:, 0] + windows[:, 2], windows[:, 1] + windows[:, 3]))


def _inside(boxes: np.ndarray, area: np.ndarray) -> np.ndarray:
    tol = feats.EDGE_TOLERANCE
    return (
        (boxes[:, 0] >= area[:, 0] - tol)
        & (boxes[:, 1] >= area[:, 1] - tol)
        & (boxes[:, 2] <= area[:, 2] + tol)
        & (boxes[:, 3] <= area[:, 3] + tol)
    )


def _intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.column_stack((np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])))


def _clipped_iou(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> np.ndarray:
    a, b = _intersect(a, window), _intersect(b, window)
    inter = _intersect(a, b)
    area = lambda r: np.maximum(r[:, 2] - r[:, 0], 0.0) * np.maximum(r[:, 3] - r[:, 1], 0.0)  # noqa: E731
    overlap = area(inter)
    union = area(a) + area(b) - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def _groups(n: int, i: np.ndarray, j: np.ndarray) -> list[np.ndarray]:
    """Connected components of the pairs, as index arrays of two or more."""
    parent = list(range(n))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(k) for k in range(n)], dtype=np.intp)
    members = np.unique(np.concatenate((i, j)))
    out: dict[int, list[int]] = {}
    for k in members.tolist():
        out.setdefault(int(roots[k]), []).append(k)
    return [np.array(v, dtype=np.intp) for v in out.values() if len(v) > 1]
