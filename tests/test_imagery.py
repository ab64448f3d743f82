from __future__ import annotations

import io

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

from airflow_provider_osml import imagery


def decode(data: bytes) -> tuple[np.ndarray, dict]:
    with MemoryFile(data) as memfile, memfile.open() as dataset:
        return dataset.read(), dataset.tags()


@pytest.fixture
def tile() -> np.ndarray:
    # smooth content, so lossy codecs stay close to the source
    yy, xx = np.mgrid[0:64, 0:96]
    return np.stack([xx * 2, yy * 3, (xx + yy)]).astype(np.uint8)


@pytest.mark.parametrize("fmt", imagery.TILE_FORMATS)
@pytest.mark.parametrize("compression", imagery.TILE_COMPRESSIONS)
def test_every_format_and_compression_decodes_to_the_tile(tile, fmt, compression):
    transform = from_origin(85.0, 33.0, 1e-5, 1e-5)
    data = imagery.encode_tile(tile, fmt, compression, transform=transform, crs="EPSG:4326")
    pixels, tags = decode(data)
    assert pixels.shape == tile.shape
    lossy = "JPEG" in (fmt, compression) or (fmt == "NITF" and compression in ("J2K", "LZW"))
    if lossy:
        assert np.abs(pixels.astype(int) - tile).mean() < 8
    else:
        np.testing.assert_array_equal(pixels, tile)
    if fmt == "NITF":
        assert tags["NITF_ICORDS"] == "G"
        assert tags["NITF_IGEOLO"].startswith("330000N0850000E")
        assert tags["NITF_IC"] == {"NONE": "NC", "JPEG": "C3", "J2K": "C8", "LZW": "C8"}[compression]


@pytest.mark.parametrize(
    ("compression", "expected"), [("NONE", None), ("LZW", "lzw"), ("JPEG", "jpeg"), ("J2K", "deflate")]
)
def test_gtiff_compression_is_honoured(tile, compression, expected):
    # osml-model-runner ignored GTIFF compression (spec 11 Q9); GeoTIFF has no J2K codec, DEFLATE stands in
    with MemoryFile(imagery.encode_tile(tile, "GTIFF", compression)) as memfile, memfile.open() as dataset:
        assert (dataset.compression.name if dataset.compression else None) == expected


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("compression", imagery.TILE_COMPRESSIONS)
def test_jpeg_and_png_tiles_decode_with_pillow(tile, fmt, compression):
    image = Image.open(io.BytesIO(imagery.encode_tile(tile, fmt, compression)))
    assert image.format == fmt and image.size == (96, 64) and image.mode == "RGB"
    decoded = np.moveaxis(np.asarray(image), -1, 0).astype(int)
    assert np.abs(decoded - tile).mean() < (8 if fmt == "JPEG" else 1e-9)


@pytest.mark.parametrize(
    ("crs", "transform"),
    [
        pytest.param("EPSG:32633", from_origin(500_000.0, 5_300_000.0, 0.5, 0.5), id="utm"),
        pytest.param("EPSG:3857", from_origin(1_669_792.0, 6_106_854.0, 0.6, 0.6), id="web-mercator"),
        pytest.param("EPSG:4326", from_origin(-77.05, 38.9, 5e-6, 5e-6), id="geographic"),
    ],
)
@pytest.mark.parametrize("compression", imagery.TILE_COMPRESSIONS)
def test_nitf_tiles_carry_their_own_footprint(tile, crs, transform, compression):
    from rasterio.warp import transform as reproject_points
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    tile_transform = window_transform(Window(3000, 2000, 96, 64), transform)  # a tile deep inside a scene
    data = imagery.encode_tile(tile, "NITF", compression, transform=tile_transform, crs=crs)
    with MemoryFile(data) as memfile, memfile.open() as dataset:
        assert dataset.tags()["NITF_ICORDS"] == "G"
        decoded = dataset.transform
        assert dataset.crs.is_geographic
    for x, y in [(0.5, 0.5), (95.5, 0.5), (95.5, 63.5), (0.5, 63.5), (48, 32)]:
        lon, lat = decoded @ (x, y)
        (want_lon,), (want_lat,) = reproject_points(crs, "EPSG:4326", *([v] for v in tile_transform @ (x, y)))
        # IGEOLO has whole arc-seconds: within half a second (1.4e-4 deg) plus projection curvature
        assert abs(lon - want_lon) < 2e-4 and abs(lat - want_lat) < 2e-4


def test_igeolo_rounds_seconds_with_carry():
    assert imagery._dms(33.99999, "NS", 2) == "340000N"
    assert imagery._dms(-85.5, "EW", 3) == "0853000W"


def test_png_from_pillow_is_lossless_and_single_band_works(tile):
    mono = tile[:1]
    image = Image.open(io.BytesIO(imagery.encode_tile(mono, "PNG")))
    np.testing.assert_array_equal(np.asarray(image), mono[0])


def test_sixteen_bit_png_goes_through_gdal():
    tile = np.arange(2 * 32 * 32, dtype=np.uint16).reshape(2, 32, 32) * 17
    pixels, _ = decode(imagery.encode_tile(tile, "PNG"))
    np.testing.assert_array_equal(pixels, tile)


def test_unknown_format_is_refused(tile):
    with pytest.raises(ValueError, match="imageProcessorTileFormat"):
        imagery.encode_tile(tile, "TIFF")


def test_meta_ntf_sensor_model_and_source_metadata(fixtures_dir):
    with imagery.open_image(str(fixtures_dir / "meta.ntf")) as dataset:
        info = imagery.image_info(dataset)
        model = imagery.build_sensor_model(dataset)
        source = imagery.nitf_source_metadata(dataset, "./test/data/small.ntf")
    assert (info.width, info.height, info.band_count, info.is_nitf) == (1024, 1024, 1, True)
    assert type(model).__name__ == "GDALAffineSensorModel"
    # spec 4.3 test vector
    assert source == {
        "location": "./test/data/small.ntf",
        "format": "NITF",
        "category": "VIS",
        "sourceId": "Checks an uncompressed 1024x1024 8 bit mono image with GEOcentric data. Airfield",
        "sourceDT": "1996-12-17T10:26:30Z",
    }


def test_open_missing_image_names_the_field(tmp_path):
    with pytest.raises(imagery.InvalidImage, match="imageUrls"), imagery.open_image(str(tmp_path / "none.tif")):
        pass


def test_image_without_georeferencing_has_no_sensor_model(tmp_path):
    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dataset:
        dataset.write(np.zeros((1, 8, 8), dtype=np.uint8))
    with imagery.open_image(str(path)) as dataset:
        assert imagery.build_sensor_model(dataset) is None
        assert imagery.nitf_source_metadata(dataset, str(path)) is None


@pytest.mark.parametrize(
    ("pixel_box", "expected"),
    [
        pytest.param((10, 15, 70, 90), ((15, 10), (60, 75)), id="inside"),
        pytest.param((-10, -10, 50, 50), ((0, 0), (50, 50)), id="clipped-to-image"),
    ],
)
def test_roi_bounds_upstream_vectors(fixtures_dir, pixel_box, expected):
    """spec 2.4: an ROI drawn over known pixels maps back to those pixels on GeogToWGS84GeoKey5.tif."""
    import math

    from aws.osml.photogrammetry import ImageCoordinate

    with imagery.open_image(str(fixtures_dir / "GeogToWGS84GeoKey5.tif")) as dataset:
        model = imagery.build_sensor_model(dataset)
        width, height = dataset.width, dataset.height
    minx, miny, maxx, maxy = pixel_box
    corners = [(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy), (minx, miny)]
    lonlat = []
    for x, y in corners:
        world = model.image_to_world(ImageCoordinate([x, y]))
        lonlat.append(f"{math.degrees(world.longitude)!r} {math.degrees(world.latitude)!r}")
    wkt = f"POLYGON (({', '.join(lonlat)}))"
    left, top, right, bottom = imagery.roi_pixel_bounds(wkt, model, width, height)
    assert ((top, left), (right - left, bottom - top)) == expected


def test_roi_outside_the_image_gives_none(fixtures_dir):
    with imagery.open_image(str(fixtures_dir / "meta.ntf")) as dataset:
        model = imagery.build_sensor_model(dataset)
    assert imagery.roi_pixel_bounds("POLYGON ((10 10, 11 10, 11 11, 10 11, 10 10))", model, 1024, 1024) is None


@pytest.mark.parametrize("max_bytes", [imagery.REGION_READ_MAX_BYTES, 10_000], ids=["whole-region", "strips"])
def test_region_pixels_give_every_tile_its_pixels_with_bounded_reads(tmp_path, max_bytes):
    from airflow_provider_osml.tiling import TileWindow, plan_image

    rng = np.random.default_rng(3)
    source = rng.integers(0, 65535, size=(2, 300, 400), dtype=np.uint16)
    path = tmp_path / "region.tif"
    with rasterio.open(path, "w", driver="GTiff", width=400, height=300, count=2, dtype="uint16") as dataset:
        dataset.write(source)
    plan = plan_image(400, 300, tile_size=128, tile_overlap=16, region_size=1024)
    tiles = [TileWindow.from_region(t) for t in plan.all_tiles()]
    with imagery.open_image(str(path)) as dataset:
        pixels = imagery.RegionPixels(dataset, (0, 0, 400, 300), tiles, max_bytes=max_bytes)
        for tile in tiles:
            chip = pixels.chip(tile)
            np.testing.assert_array_equal(chip, source[:, tile.row : tile.row + tile.height,
                                                      tile.col : tile.col + tile.width])
            pixels.release(tile)
    rows = {(t.row, t.height) for t in tiles}
    assert pixels.whole_region == (max_bytes > 400 * 300 * 4)
    if not pixels.whole_region:
        assert pixels.strip_reads == len(rows)  # each strip read once: tiles are row-major
        assert pixels._strips == {}  # nothing kept once every tile is encoded
