"""rangeAdjustment: the toolkit's DRA arithmetic in numpy, and 8-bit tiles models can decode."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from airflow_provider_osml import imagery, range_adjustment


def toolkit_dra(counts, first, last):
    """Reference: osml-imagery-toolkit's DRAParameters.from_counts, line by line (plain loops)."""
    n = len(counts)
    amin = 0
    while amin < n and counts[amin] == 0:
        amin += 1
    amax = n - 1
    while amax > 0 and counts[amax] == 0:
        amax -= 1
    cum = list(counts)
    for i in range(1, n):
        cum[i] += cum[i - 1]
    e_min = 0
    while cum[e_min] < 0.02 * cum[-1] and e_min < n - 1:
        e_min += 1
    e_max = n - 1
    while cum[e_max] > 0.98 * cum[-1] and e_max > 0:
        e_max -= 1
    lo, hi = max(amin, e_min - 0.2 * (e_max - e_min)), min(amax, e_max + 0.4 * (e_max - e_min))
    step = (last - first) / n
    return (lo * step + first, hi * step + first), (amin * step + first, amax * step + first)


@pytest.mark.parametrize("seed", range(5))
def test_dra_matches_the_toolkit_algorithm(seed):
    rng = np.random.default_rng(seed)
    counts = np.zeros(2047, dtype=np.int64)
    counts[rng.integers(0, 2047, 3)] = rng.integers(1, 5, 3)  # outliers
    counts[200:900] += rng.integers(0, 1000, 700)
    limits = range_adjustment.dra_limits(counts, 0.0, 2047.0)
    dra, minmax = toolkit_dra(counts.tolist(), 0.0, 2047.0)
    assert limits["DRA"] == pytest.approx(dra)
    assert limits["MINMAX"] == pytest.approx(minmax)


@pytest.mark.parametrize("mode", ["MINMAX", "DRA"])
def test_eleven_bit_image_becomes_decodable_eight_bit_tiles(tmp_path, mode):
    rng = np.random.default_rng(1)
    source = rng.normal(600, 120, size=(1, 256, 256)).clip(0, 2047).astype(np.uint16)
    path = tmp_path / "pan.tif"
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint16") as dataset:
        dataset.write(source)
    with imagery.open_image(str(path)) as dataset:
        limits = range_adjustment.image_limits(dataset, mode)
    (lo, hi), = limits
    if mode == "MINMAX":
        assert (lo, hi) == pytest.approx((source.min(), source.max()), abs=1.0)
    else:
        assert source.min() <= lo < np.percentile(source, 5) and np.percentile(source, 95) < hi <= source.max()
    tile = range_adjustment.to_uint8(source[:, :64, :64], limits)
    assert tile.dtype == np.uint8 and tile.min() >= 0 and tile.max() <= 255
    expected = np.clip(np.rint((source[:, :64, :64].astype(float) - lo) * 255 / (hi - lo)), 0, 255)
    assert np.abs(tile.astype(float) - expected).max() <= 1
    import io

    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(imagery.encode_tile(tile, "JPEG"))))
    assert decoded.shape == (64, 64) and np.abs(decoded.astype(int) - tile[0]).mean() < 8


def test_none_keeps_native_pixels(tmp_path):
    path = tmp_path / "x.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint16") as dataset:
        dataset.write(np.ones((1, 8, 8), dtype=np.uint16))
    with imagery.open_image(str(path)) as dataset:
        assert range_adjustment.image_limits(dataset, "NONE") is None
