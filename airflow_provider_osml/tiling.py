"""Region and tile planning, re-implementing the osml-model-runner tiling strategies (spec 2).

Conventions follow osml verbatim so the upstream test vectors apply unchanged:

- ``ImageRegion = ((row, col), (width, height))``: row first in the corner, width first in the size.
- Sizes and overlaps are ``(x, y)`` = ``(width, height)`` pairs; a plain ``int`` means a square.
- Every list is in generation order: row-major, top-left first.

Two strategies:

- ``VARIABLE_OVERLAP`` (osml 2.3.0+ default): the overlap grows per axis until only full-size tiles are
  needed, region sizes are a whole number of tile strides plus the overlap, and the tiles of all regions
  form one global grid without duplicates.
- ``VARIABLE_TILE`` (osml 2.1.1/2.2.0): fixed stride, edge tiles truncated, slivers no larger than the
  overlap dropped, the tile grid restarts at every region origin.

Deliberate differences from upstream:

- Spec 11 Q18: a region size smaller than the tile size is grown to the tile size (a region must hold at
  least one tile) instead of failing with ``ValueError``.
- :func:`plan_image` grows the region size until there are at most ``max_regions`` regions, because each
  region becomes one Airflow mapped task and ``[core] max_map_length`` is 1024.
- An axis no longer than the overlap keeps one short span instead of being dropped as a sliver (upstream
  plans no region at all for an image at most ``overlap`` pixels high or wide).
- Each axis of the bounds is trimmed to its last full tile on its own; upstream trims only when both axes
  hold a full tile, so for an image lower (or narrower) than a tile its last region leaves the grid.
- ``TilingPlan.tiles`` expands from the plan's adjusted overlap, so the tiles of all regions always lie on
  the one global grid; upstream re-expands from the minimum per region, which drifts for small strides.

Known upstream behaviour kept for fidelity (the spec vectors and golden counts depend on it):
``VARIABLE_OVERLAP`` rounds the adjusted overlap up, so when ``O + n*stride - D`` is not a multiple of
``n - 1`` the grid stops up to ``n - 2`` pixels before the right or bottom edge and those pixels are never
tiled (spec 2.7 D ends at row 1499 of 1500; 200000 px with tile 512 / overlap 50 leaves 336 px).

Everything works per axis on arithmetic ranges, so planning costs O(regions), never O(tiles).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ImageRegion = tuple[tuple[int, int], tuple[int, int]]
Pair = tuple[int, int]
# A 1-D span: (start, length).
_Span = tuple[int, int]

VARIABLE_OVERLAP = "VARIABLE_OVERLAP"
VARIABLE_TILE = "VARIABLE_TILE"
TILING_STRATEGIES = (VARIABLE_OVERLAP, VARIABLE_TILE)

DEFAULT_REGION_SIZE = 10240
# Airflow's default [core] max_map_length: one mapped task per region must stay under it.
DEFAULT_MAX_REGIONS = 1024


# --- value helpers ---------------------------------------------------------------------------------


def _int(value: Any, name: str) -> int:
    """An exact int (bools and non-integral floats are rejected)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    try:
        return int(value.__index__())  # numpy integers
    except (AttributeError, TypeError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _pair(value: int | Sequence[int], name: str) -> Pair:
    """``int`` -> ``(v, v)``; a 2-sequence -> a tuple of ints."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (x, y) pair, got {value!r}")
        return _int(value[0], name), _int(value[1], name)
    v = _int(value, name)
    return v, v


def as_region(value: Sequence[Sequence[int]]) -> ImageRegion:
    """Normalise ``[[row, col], [w, h]]`` (e.g. from JSON) to an ``ImageRegion`` of ints."""
    try:
        (row, col), (width, height) = value
    except (TypeError, ValueError):
        raise ValueError(f"a region must be ((row, col), (width, height)), got {value!r}") from None
    return (_int(row, "row"), _int(col, "col")), (_int(width, "width"), _int(height, "height"))


def region_to_json(region: ImageRegion) -> list[list[int]]:
    """``ImageRegion`` -> ``[[row, col], [w, h]]`` (JSON / XCom friendly)."""
    (row, col), (width, height) = as_region(region)
    return [[row, col], [width, height]]


def _check_tile(tile_size: Pair, tile_overlap: Pair) -> None:
    if min(tile_size) <= 0:
        raise ValueError(f"tile size must be positive, got {tile_size}")
    if min(tile_overlap) < 0:
        raise ValueError(f"tile overlap must not be negative, got {tile_overlap}")
    if tile_overlap[0] >= tile_size[0] or tile_overlap[1] >= tile_size[1]:
        raise ValueError(f"tile overlap {tile_overlap} must be less than tile size {tile_size}")


def _check_strategy(strategy: str) -> str:
    name = str(strategy).upper()
    if name not in TILING_STRATEGIES:
        raise ValueError(f"unknown tiling strategy {strategy!r}; expected one of {TILING_STRATEGIES}")
    return name


# --- tile windows and ids --------------------------------------------------------------------------


@dataclass(frozen=True)
class TileWindow:
    """A pixel window in GDAL order: column (x), row (y), width, height."""

    col: int
    row: int
    width: int
    height: int

    @classmethod
    def from_region(cls, region: ImageRegion) -> TileWindow:
        (row, col), (width, height) = as_region(region)
        return cls(col=col, row=row, width=width, height=height)

    def to_region(self) -> ImageRegion:
        return (self.row, self.col), (self.width, self.height)

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(minx, miny, maxx, maxy)`` in pixels."""
        return self.col, self.row, self.col + self.width, self.row + self.height

    def as_list(self) -> list[int]:
        """GDAL ``srcWin`` order: ``[col, row, width, height]``."""
        return [self.col, self.row, self.width, self.height]

    @property
    def key(self) -> str:
        return f"c{self.col}-r{self.row}-w{self.width}-h{self.height}"


def region_id(region: ImageRegion, job_id: str) -> str:
    """Deterministic region id as osml 2.3.0: ``"(row, col)(w, h)-job"``."""
    ul, size = as_region(region)
    return f"{ul}{size}-{job_id}"


def region_key(region: ImageRegion) -> str:
    """Filesystem/S3-safe key, zero-padded so keys sort in row-major order."""
    (row, col), (width, height) = as_region(region)
    return f"r{row:07d}-c{col:07d}-w{width}-h{height}"


# --- generate_crops --------------------------------------------------------------------------------


def _ceildiv(a: int, b: int) -> int:
    return -(-a // b)


def _axis_crops(start: int, length: int, chip: int, overlap: int, only_full: bool) -> list[_Span]:
    """The 1-D spans of ``generate_crops`` along one axis.

    ``generate_crops`` filters width and height independently, so the 2-D result is the row-major product
    of the two axes. Counting in closed form keeps this O(spans).
    """
    stride = chip - overlap
    if only_full:
        # A span is full while the remaining length is at least one chip.
        count = (length - chip) // stride + 1 if length >= chip else 0
    else:
        # Keep spans longer than the overlap: c*stride < length - overlap.
        count = max(0, _ceildiv(length - overlap, stride))
    end = start + length
    return [(s, min(chip, end - s)) for s in range(start, start + count * stride, stride)]


def _crop_axes(
    region: ImageRegion, chip_size: Pair, overlap: Pair, only_full_tiles: bool
) -> tuple[list[_Span], list[_Span]]:
    """Column spans and row spans of ``generate_crops`` (raises like upstream on a bad overlap)."""
    if overlap[0] >= chip_size[0] or overlap[1] >= chip_size[1]:
        raise ValueError(f"Overlap must be less than chip size! chip_size = {chip_size} overlap = {overlap}")
    (row, col), (width, height) = region
    cols = _axis_crops(col, width, chip_size[0], overlap[0], only_full_tiles)
    rows = _axis_crops(row, height, chip_size[1], overlap[1], only_full_tiles)
    return cols, rows


def _keep_first(
    axes: tuple[list[_Span], list[_Span]], region: ImageRegion, chip_size: Pair
) -> tuple[list[_Span], list[_Span]]:
    """Fix: an axis no longer than the overlap is one short span, not a dropped sliver.

    Upstream drops it, so an image (or ROI) at most ``overlap`` pixels wide or high gets no regions.
    A sliver is only redundant when an earlier span already covers it, and the first span has none.
    """
    (row, col), (width, height) = region
    cols, rows = axes
    if not cols and width > 0:
        cols = [(col, min(chip_size[0], width))]
    if not rows and height > 0:
        rows = [(row, min(chip_size[1], height))]
    return cols, rows


def _product(cols: list[_Span], rows: list[_Span]) -> list[ImageRegion]:
    return [((y, x), (w, h)) for y, h in rows for x, w in cols]


def generate_crops(
    region: ImageRegion,
    chip_size: int | Sequence[int],
    overlap: int | Sequence[int],
    only_full_tiles: bool = False,
) -> list[ImageRegion]:
    """Upstream ``generate_crops``: fixed stride, truncated edges, slivers <= overlap dropped, row-major.

    With ``only_full_tiles`` only crops of exactly ``chip_size`` are kept.
    """
    chip, ov = _pair(chip_size, "chip size"), _pair(overlap, "overlap")
    return _product(*_crop_axes(as_region(region), chip, ov, only_full_tiles))


# --- VARIABLE_OVERLAP arithmetic -------------------------------------------------------------------


def expand_overlap(D: int, T: int, O: int) -> int:  # noqa: E741 - the spec's names
    """Smallest overlap >= ``O`` with which ``ceil((D-O)/(T-O))`` tiles of size ``T`` fit in ``D``.

    Rounded up, as upstream, so the tiles may stop a few pixels short of ``D``.
    """
    stride = T - O
    n = _ceildiv(D - O, stride)
    if n > 1:
        return O + _ceildiv(O + n * stride - D, n - 1)
    return O


def adjusted_overlap(size: Pair, tile_size: Pair, tile_overlap: Pair) -> Pair:
    """``expand_overlap`` on both axes (they are independent)."""
    return (
        expand_overlap(size[0], tile_size[0], tile_overlap[0]),
        expand_overlap(size[1], tile_size[1], tile_overlap[1]),
    )


def region_size_for_full_tiles(region_size: Pair, tile_size: Pair, overlap: Pair) -> Pair:
    """Largest size <= ``region_size`` that is a whole number of strides plus the overlap."""
    _check_tile(tile_size, overlap)
    sx, sy = tile_size[0] - overlap[0], tile_size[1] - overlap[1]
    return (
        (region_size[0] - overlap[0]) // sx * sx + overlap[0],
        (region_size[1] - overlap[1]) // sy * sy + overlap[1],
    )


def _grow_to_tile(region_size: Pair, tile_size: Pair) -> Pair:
    """Spec 11 Q18 fix: a region must hold at least one tile."""
    return max(region_size[0], tile_size[0]), max(region_size[1], tile_size[1])


def _variable_overlap_region_axes(
    bounds: ImageRegion, region_size: Pair, tile_size: Pair, tile_overlap: Pair
) -> tuple[list[_Span], list[_Span]]:
    """Upstream ``compute_regions``: trim the bounds to the last full tile, then crop aligned regions."""
    overlap = adjusted_overlap(bounds[1], tile_size, tile_overlap)
    cols, rows = _crop_axes(bounds, tile_size, overlap, only_full_tiles=True)
    (row, col), (width, height) = bounds
    # Trim each axis to its last full tile. Upstream trims only when both axes hold a full tile, which
    # puts the last region of a lower-than-a-tile image off the grid (near-duplicate tiles).
    size = (
        cols[-1][0] + cols[-1][1] - col if cols else width,
        rows[-1][0] + rows[-1][1] - row if rows else height,
    )
    adjusted_region = region_size_for_full_tiles(_grow_to_tile(region_size, tile_size), tile_size, overlap)
    trimmed = ((row, col), size)
    return _keep_first(_crop_axes(trimmed, adjusted_region, overlap, False), trimmed, adjusted_region)


def _variable_tile_region_axes(
    bounds: ImageRegion, region_size: Pair, tile_size: Pair, tile_overlap: Pair
) -> tuple[list[_Span], list[_Span]]:
    """osml 2.1.1: regions are plain crops of the bounds, overlapping by the tile overlap."""
    region_size = _grow_to_tile(region_size, tile_size)
    return _keep_first(_crop_axes(bounds, region_size, tile_overlap, False), bounds, region_size)


def _region_axes(
    bounds: ImageRegion, region_size: Pair, tile_size: Pair, tile_overlap: Pair, strategy: str
) -> tuple[list[_Span], list[_Span]]:
    _check_tile(tile_size, tile_overlap)
    if strategy == VARIABLE_OVERLAP:
        return _variable_overlap_region_axes(bounds, region_size, tile_size, tile_overlap)
    return _variable_tile_region_axes(bounds, region_size, tile_size, tile_overlap)


def _tile_axes(
    region: ImageRegion, tile_size: Pair, tile_overlap: Pair, strategy: str
) -> tuple[list[_Span], list[_Span]]:
    _check_tile(tile_size, tile_overlap)
    if strategy == VARIABLE_TILE:
        return _keep_first(_crop_axes(region, tile_size, tile_overlap, False), region, tile_size)
    # Upstream compute_tiles: the overlap is re-expanded for this region's size.
    overlap = adjusted_overlap(region[1], tile_size, tile_overlap)
    cols, rows = _crop_axes(region, tile_size, overlap, only_full_tiles=True)
    if not (cols and rows):
        # Region smaller than a tile on some axis: fall back to (partial) crops.
        cols, rows = _keep_first(_crop_axes(region, tile_size, overlap, False), region, tile_size)
    return cols, rows


# --- public planning API ---------------------------------------------------------------------------


def plan_regions(
    processing_bounds: ImageRegion,
    region_size: int | Sequence[int],
    tile_size: int | Sequence[int],
    tile_overlap: int | Sequence[int],
    strategy: str = VARIABLE_OVERLAP,
) -> list[ImageRegion]:
    """The regions of ``processing_bounds``, row-major (upstream ``compute_regions`` / 2.1.1 crops)."""
    axes = _region_axes(
        as_region(processing_bounds),
        _pair(region_size, "region size"),
        _pair(tile_size, "tile size"),
        _pair(tile_overlap, "tile overlap"),
        _check_strategy(strategy),
    )
    return _product(*axes)


def plan_tiles(
    region: ImageRegion,
    tile_size: int | Sequence[int],
    tile_overlap: int | Sequence[int],
    strategy: str = VARIABLE_OVERLAP,
) -> list[ImageRegion]:
    """The tiles of one region, row-major (upstream ``compute_tiles`` / 2.1.1 crops).

    ``tile_overlap`` is the requested minimum; ``VARIABLE_OVERLAP`` expands it per region.
    """
    axes = _tile_axes(
        as_region(region),
        _pair(tile_size, "tile size"),
        _pair(tile_overlap, "tile overlap"),
        _check_strategy(strategy),
    )
    return _product(*axes)


@dataclass(frozen=True)
class TilingPlan:
    """Regions of one image plus everything needed to re-derive their tiles."""

    processing_bounds: ImageRegion
    region_size: Pair
    tile_size: Pair
    tile_overlap: Pair
    adjusted_overlap: Pair
    strategy: str
    regions: tuple[ImageRegion, ...]

    @property
    def adjusted_region_size(self) -> Pair:
        """The nominal region size after alignment to whole tile strides (``VARIABLE_OVERLAP``)."""
        if self.strategy == VARIABLE_TILE:
            return self.region_size
        return region_size_for_full_tiles(self.region_size, self.tile_size, self.adjusted_overlap)

    def tiles(self, region: ImageRegion) -> list[ImageRegion]:
        """The tiles of one region (regions from JSON lists are accepted).

        ``VARIABLE_OVERLAP`` expands from the plan's adjusted overlap rather than the requested minimum.
        That is the same as upstream whenever upstream is consistent, and it keeps the global grid where
        upstream's per-region re-expansion drifts off it (small strides, e.g. tile 16 overlap 9).
        """
        return plan_tiles(region, self.tile_size, self.adjusted_overlap, self.strategy)

    def all_tiles(self) -> list[ImageRegion]:
        """All tiles, region by region, each region row-major."""
        return [tile for region in self.regions for tile in self.tiles(region)]

    def tile_count(self) -> int:
        """Number of tiles, counted without building them."""
        total = 0
        for region in self.regions:
            cols, rows = _tile_axes(region, self.tile_size, self.adjusted_overlap, self.strategy)
            total += len(cols) * len(rows)
        return total

    def to_dict(self) -> dict[str, Any]:
        """JSON types only (lists, ints, str), for XCom or the job store."""
        return {
            "strategy": self.strategy,
            "processing_bounds": region_to_json(self.processing_bounds),
            "region_size": list(self.region_size),
            "tile_size": list(self.tile_size),
            "tile_overlap": list(self.tile_overlap),
            "adjusted_overlap": list(self.adjusted_overlap),
            "regions": [region_to_json(r) for r in self.regions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TilingPlan:
        """Inverse of :meth:`to_dict`."""
        return cls(
            processing_bounds=as_region(data["processing_bounds"]),
            region_size=_pair(data["region_size"], "region size"),
            tile_size=_pair(data["tile_size"], "tile size"),
            tile_overlap=_pair(data["tile_overlap"], "tile overlap"),
            adjusted_overlap=_pair(data["adjusted_overlap"], "adjusted overlap"),
            strategy=_check_strategy(data["strategy"]),
            regions=tuple(as_region(r) for r in data["regions"]),
        )


def _clip_bounds(bounds: ImageRegion | None, width: int, height: int) -> ImageRegion:
    """The processing bounds intersected with the image; an empty result is an error."""
    if bounds is None:
        return (0, 0), (width, height)
    (row, col), (w, h) = as_region(bounds)
    top, left = max(row, 0), max(col, 0)
    bottom, right = min(row + h, height), min(col + w, width)
    if bottom <= top or right <= left:
        raise ValueError(f"processing bounds {bounds} do not intersect the {width}x{height} image")
    return (top, left), (right - left, bottom - top)


def _scaled(region_size: Pair, length: int) -> Pair:
    """``region_size`` scaled so its longer side is ``length`` (aspect kept, rounded up)."""
    longest = max(region_size)
    return _ceildiv(region_size[0] * length, longest), _ceildiv(region_size[1] * length, longest)


def _fit_region_size(
    bounds: ImageRegion, region_size: Pair, tile_size: Pair, tile_overlap: Pair, strategy: str, max_regions: int
) -> Pair:
    """Smallest scaled-up region size that gives at most ``max_regions`` regions.

    The region count never increases with the region size, so a binary search on the longer side works;
    a region covering the whole bounds always gives one region.
    """

    def count(size: Pair) -> int:
        cols, rows = _region_axes(bounds, size, tile_size, tile_overlap, strategy)
        return len(cols) * len(rows)

    if count(region_size) <= max_regions:
        return region_size
    width, height = bounds[1]
    low = max(region_size)  # too small
    high = low * max(_ceildiv(width, region_size[0]), _ceildiv(height, region_size[1]), 2)
    while high - low > 1:
        mid = (low + high) // 2
        if count(_scaled(region_size, mid)) <= max_regions:
            high = mid
        else:
            low = mid
    return _scaled(region_size, high)


def plan_image(
    width: int,
    height: int,
    *,
    tile_size: int | Sequence[int],
    tile_overlap: int | Sequence[int],
    region_size: int | Sequence[int] = DEFAULT_REGION_SIZE,
    strategy: str = VARIABLE_OVERLAP,
    processing_bounds: ImageRegion | None = None,
    max_regions: int = DEFAULT_MAX_REGIONS,
) -> TilingPlan:
    """Plan the regions of a ``width`` x ``height`` image (or of ``processing_bounds`` inside it).

    The region size is grown to the tile size (spec 11 Q18) and then, if needed, scaled up until there
    are at most ``max_regions`` regions. ``TilingPlan.region_size`` is the size actually used.
    """
    width, height = _int(width, "width"), _int(height, "height")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if _int(max_regions, "max_regions") < 1:
        raise ValueError(f"max_regions must be at least 1, got {max_regions}")
    tile, overlap = _pair(tile_size, "tile size"), _pair(tile_overlap, "tile overlap")
    _check_tile(tile, overlap)
    name = _check_strategy(strategy)
    bounds = _clip_bounds(processing_bounds, width, height)
    region = _grow_to_tile(_pair(region_size, "region size"), tile)
    region = _fit_region_size(bounds, region, tile, overlap, name, max_regions)
    adjusted = adjusted_overlap(bounds[1], tile, overlap) if name == VARIABLE_OVERLAP else overlap
    return TilingPlan(
        processing_bounds=bounds,
        region_size=region,
        tile_size=tile,
        tile_overlap=overlap,
        adjusted_overlap=adjusted,
        strategy=name,
        regions=tuple(_product(*_region_axes(bounds, region, tile, overlap, name))),
    )
