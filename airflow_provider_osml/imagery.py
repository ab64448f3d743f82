"""Open images with rasterio, read windows, encode tiles, build sensor models.

Plain Python: credentials and endpoints arrive as arguments, never from Airflow.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.windows import Window

from airflow_provider_osml.request import TILE_COMPRESSIONS, TILE_FORMATS

log = logging.getLogger(__name__)


# NITF image compression codes (IC) per requested compression, as osml-imagery-toolkit maps them.
_NITF_IC = {"NONE": "NC", "JPEG": "C3", "J2K": "C8"}
# GeoTIFF compression: osml-model-runner meant to honour these but never did (spec 11 Q9); we do.
_GTIFF_COMPRESS = {"LZW": "LZW", "JPEG": "JPEG", "J2K": "DEFLATE"}


class InvalidImage(ValueError):
    """The image cannot be opened or read as requested."""


@dataclass(frozen=True)
class ImageInfo:
    """What later tasks need to know about an image without opening it again."""

    width: int
    height: int
    band_count: int
    dtype: str
    driver: str

    @property
    def is_nitf(self) -> bool:
        return self.driver == "NITF"

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "bandCount": self.band_count,
            "dtype": self.dtype,
            "driver": self.driver,
        }


@dataclass(frozen=True)
class S3Access:
    """How GDAL reaches ``s3://`` images: a boto3 session and an optional endpoint (moto, MinIO)."""

    session: object | None = None  # boto3.Session
    endpoint_url: str | None = None


@contextlib.contextmanager
def open_image(url: str, *, s3: S3Access | None = None) -> Iterator[rasterio.DatasetReader]:
    """Open an already validated image URL (absolute local path, ``s3://`` or allow-listed http(s)) for reading."""
    # no directory listing for remote images (one request saved); local ones keep their .RPB/.ovr side files
    env_options = {} if url.startswith("/") else {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    session = None
    if url.startswith(("http://", "https://")):
        _check_web_host(url)
        # TLS stays verified (GDAL's default); no directory listings, one HEAD then ranged GETs
        env_options.update(GDAL_HTTP_MAX_RETRY="3", GDAL_HTTP_RETRY_DELAY="1")
    if url.startswith("s3://"):
        session = _aws_session(s3 or S3Access())
        if s3 and s3.endpoint_url:
            # local S3 servers (moto, MinIO) answer path-style only: bucket.127.0.0.1 does not resolve
            env_options["AWS_VIRTUAL_HOSTING"] = "FALSE"
            if s3.endpoint_url.startswith("http://"):
                env_options["AWS_HTTPS"] = "NO"
    try:
        with rasterio.Env(session=session, **env_options), rasterio.open(url) as dataset:
            yield dataset
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidImage(f"imageUrls[0]: cannot open {url!r}: {exc}") from exc


def _check_web_host(url: str) -> None:
    from urllib.parse import urlsplit

    from airflow_provider_osml.request import resolves_to_metadata_address

    host = urlsplit(url).hostname or ""
    if resolves_to_metadata_address(host):
        raise InvalidImage(f"imageUrls[0]: host {host!r} resolves to a link-local or metadata address")


def _aws_session(s3: S3Access):
    from rasterio.session import AWSSession

    endpoint = s3.endpoint_url
    if endpoint:
        # GDAL wants host[:port] for AWS_S3_ENDPOINT and path-style addressing for local servers.
        host = endpoint.split("://", 1)[-1].rstrip("/")
        return AWSSession(session=s3.session, endpoint_url=host, aws_unsigned=False)
    return AWSSession(session=s3.session)


def image_info(dataset: rasterio.DatasetReader) -> ImageInfo:
    return ImageInfo(
        width=dataset.width,
        height=dataset.height,
        band_count=dataset.count,
        dtype=dataset.dtypes[0],
        driver=dataset.driver,
    )


def read_window(dataset: rasterio.DatasetReader, col: int, row: int, width: int, height: int) -> np.ndarray:
    """Read one window, all bands: a ``(bands, height, width)`` array."""
    return dataset.read(window=Window(col, row, width, height))


# Above this, a region is read one tile row (strip) at a time instead of all at once.
REGION_READ_MAX_BYTES = 512 * 1024 * 1024


class RegionPixels:
    """The pixels of one region for its tiles, read at most once per strip, with bounded memory.

    A region that fits in ``max_bytes`` is read in one call and sliced (the fast path). A bigger one is read
    one strip per distinct tile row, kept only while tiles of that row are still being encoded, so memory
    stays near one strip per worker however large the region or its pixel type. Dataset reads are serialised:
    a rasterio dataset is not safe to read from several threads.
    """

    def __init__(self, dataset, region: tuple[int, int, int, int], tiles, max_bytes: int = REGION_READ_MAX_BYTES,
                 *, range_limits: list | None = None):
        import threading

        self._range_limits = range_limits  # rangeAdjustment: chips come out 8-bit
        self._dataset = dataset
        self._col, self._row, self._width, height = region
        self._lock = threading.Lock()
        bytes_per_row = self._width * dataset.count * np.dtype(dataset.dtypes[0]).itemsize
        self._whole = None
        if bytes_per_row * height <= max_bytes:
            self._whole = read_window(dataset, self._col, self._row, self._width, height)
        self._pending: dict[tuple[int, int], int] = {}
        for tile in tiles:
            key = (tile.row, tile.height)
            self._pending[key] = self._pending.get(key, 0) + 1
        self._strips: dict[tuple[int, int], np.ndarray] = {}
        self.strip_reads = 0

    @property
    def whole_region(self) -> bool:
        return self._whole is not None

    def chip(self, tile) -> np.ndarray:
        """The ``(bands, h, w)`` pixels of ``tile`` (8-bit when range-adjusted); call ``release(tile)`` after."""
        pixels = self._native_chip(tile)
        if self._range_limits is None:
            return pixels
        from airflow_provider_osml.range_adjustment import to_uint8

        return to_uint8(pixels, self._range_limits)

    def _native_chip(self, tile) -> np.ndarray:
        x = tile.col - self._col
        if self._whole is not None:
            y = tile.row - self._row
            return self._whole[:, y : y + tile.height, x : x + tile.width]
        key = (tile.row, tile.height)
        with self._lock:
            strip = self._strips.get(key)
            if strip is None:
                strip = read_window(self._dataset, self._col, tile.row, self._width, tile.height)
                self._strips[key] = strip
                self.strip_reads += 1
        return strip[:, :, x : x + tile.width]

    def release(self, tile) -> None:
        if self._whole is not None:
            return
        key = (tile.row, tile.height)
        with self._lock:
            self._pending[key] -= 1
            if self._pending[key] <= 0:  # a re-encoded tile just re-reads its strip
                self._strips.pop(key, None)


def window_transform(dataset: rasterio.DatasetReader, col: int, row: int, width: int, height: int):
    """The affine transform of a window, or None when the image has no usable geotransform."""
    if dataset.transform.is_identity or dataset.crs is None:
        return None
    return dataset.window_transform(Window(col, row, width, height))


def encode_tile(
    pixels: np.ndarray,
    tile_format: str,
    compression: str = "NONE",
    *,
    transform=None,
    crs=None,
) -> bytes:
    """Encode a ``(bands, h, w)`` tile in the requested format, the bytes the model receives."""
    if tile_format not in TILE_FORMATS:
        raise ValueError(f"imageProcessorTileFormat: unknown tile format {tile_format!r}")
    if compression not in TILE_COMPRESSIONS:
        raise ValueError(f"imageProcessorTileCompression: unknown compression {compression!r}")
    if tile_format in ("JPEG", "PNG") and _pillow_can_encode(pixels):
        return _encode_with_pillow(pixels, tile_format)
    if tile_format == "GTIFF":
        options = {}
        if compression in _GTIFF_COMPRESS and not (compression == "JPEG" and pixels.dtype != np.uint8):
            options["compress"] = _GTIFF_COMPRESS[compression]
        return _encode_with_gdal(pixels, "GTiff", options, transform, crs)
    if tile_format == "NITF":
        return _encode_nitf(pixels, compression, transform, crs)
    return _encode_with_gdal(pixels, tile_format, {}, None, None)


def _pillow_can_encode(pixels: np.ndarray) -> bool:
    return pixels.dtype == np.uint8 and pixels.shape[0] in (1, 3)


def _encode_with_pillow(pixels: np.ndarray, tile_format: str) -> bytes:
    # Pillow is 10-100x faster than GDAL's in-memory JPEG/PNG drivers (spec anchors B4).
    array = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(array))
    if tile_format == "JPEG":
        image.save(buffer, format="JPEG", quality=75)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _profile(pixels: np.ndarray, driver: str, transform, crs) -> dict:
    profile = {
        "driver": driver,
        "count": pixels.shape[0],
        "height": pixels.shape[1],
        "width": pixels.shape[2],
        "dtype": pixels.dtype.name,
    }
    if transform is not None and crs is not None:
        profile.update(transform=transform, crs=crs)
    return profile


def _encode_with_gdal(pixels: np.ndarray, driver: str, options: dict, transform, crs) -> bytes:
    with MemoryFile() as memfile:
        with memfile.open(**_profile(pixels, driver, transform, crs), **options) as dataset:
            dataset.write(pixels)
        return memfile.read()


def _encode_nitf(pixels: np.ndarray, compression: str, transform, crs) -> bytes:
    ic = _NITF_IC.get(compression)
    if ic is None:
        log.warning("NITF tiles have no %s compression; using J2K (C8) as osml does", compression)
        ic = "C8"
    if ic == "C8" and pixels.dtype.kind == "f":
        ic = "NC"  # OpenJPEG cannot encode floats: the toolkit falls back the same way
    if ic == "C3" and pixels.dtype != np.uint8:
        ic = "NC"
    options = {"IC": ic}
    if transform is not None and crs is not None:
        # the tile carries IGEOLO for its own footprint, whatever the source CRS (GDAL writes none for most)
        options.update(ICORDS="G", IGEOLO=nitf_igeolo(transform, crs, pixels.shape[2], pixels.shape[1]))
    # Compressed NITF needs CreateCopy, so stage the tile as an uncompressed GeoTIFF in memory first.
    with MemoryFile() as staged:
        with staged.open(**_profile(pixels, "GTiff", None, None)) as dataset:
            dataset.write(pixels)
        with staged.open() as source, MemoryFile() as encoded:
            rasterio.shutil.copy(source, encoded.name, driver="NITF", **options)
            return encoded.read()


def nitf_igeolo(transform, crs, width: int, height: int) -> str:
    """IGEOLO (ICORDS=G) of a tile: its corner pixels' centres in WGS84, UL, UR, LR, LL, as ddmmssXdddmmssY.

    Pixel centres, because that is how GDAL (and so our own reader) turns IGEOLO back into a transform.
    """
    from rasterio.warp import transform as reproject_points

    corners = [(0.5, 0.5), (width - 0.5, 0.5), (width - 0.5, height - 0.5), (0.5, height - 0.5)]
    xs, ys = zip(*(transform @ corner for corner in corners), strict=True)
    lons, lats = reproject_points(CRS.from_user_input(crs), "EPSG:4326", list(xs), list(ys))
    return "".join(_dms(lat, "NS", 2) + _dms(lon, "EW", 3) for lon, lat in zip(lons, lats, strict=True))


def _dms(value: float, hemispheres: str, degree_digits: int) -> str:
    seconds = round(abs(value) * 3600)  # whole arc-seconds, carried into minutes and degrees
    degrees, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{degrees:0{degree_digits}d}{minutes:02d}{seconds:02d}{hemispheres[value < 0]}"


def build_sensor_model(dataset: rasterio.DatasetReader):
    """An osml-imagery-toolkit sensor model from the image's georeferencing, or None.

    - GeoTIFF affine transforms in any CRS and NITF IGEOLO (which GDAL turns into a geotransform) give a
      ``GDALAffineSensorModel``, exactly what osml-model-runner builds for them (the goldens depend on it);
    - local NITFs with RPC00B / RSM / ICHIPB / CSCRNA / SICD / SIDD metadata get the toolkit's own model
      (with the ``[gdal]`` extra), else their RPCs as GDAL reads them;
    - images with RPCs only (GeoTIFF tags, ``.RPB`` files), which osml leaves unlocated, get an RPC model.
    """
    from aws.osml.photogrammetry import GDALAffineSensorModel

    from airflow_provider_osml import sensor_models

    affine = None
    if dataset.crs is not None and not dataset.transform.is_identity:
        affine = GDALAffineSensorModel(dataset.transform.to_gdal(), dataset.crs.to_wkt())
    if dataset.driver == "NITF" and not dataset.name.startswith(("s3://", "/vsi", "http")):
        precise = sensor_models.nitf_metadata_model(
            dataset.name, dataset.width, dataset.height,
            affine and list(dataset.transform.to_gdal()), affine and dataset.crs.to_wkt(),
        )
        if precise is not None:
            return precise
    if affine is not None:
        return affine
    if dataset.rpcs:
        return sensor_models.rpc_sensor_model(dataset.rpcs)
    return None


def nitf_source_metadata(dataset: rasterio.DatasetReader, image_url: str) -> dict | None:
    """``sourceMetadata`` entry for NITF images (spec 4.3); None for other formats or bad IDATIM."""
    if dataset.driver != "NITF":
        return None
    tags = dataset.tags()
    try:
        source_dt = datetime.strptime(tags.get("NITF_IDATIM", ""), "%Y%m%d%H%M%S")
    except ValueError:
        log.warning("NITF IDATIM %r is not a date: no sourceMetadata", tags.get("NITF_IDATIM"))
        return None
    return {
        "location": image_url,
        "format": "NITF",
        "category": tags.get("NITF_ICAT", ""),
        "sourceId": tags.get("NITF_FTITLE", ""),
        "sourceDT": source_dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def roi_pixel_bounds(roi_wkt: str, sensor_model, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Processing bounds ``(minx, miny, maxx, maxy)`` in pixels for a lon/lat ROI (spec 2.4), None if outside.

    osml-model-runner 2.3.0+ fails every ROI request (spec 11 Q1); this is the 2.1.1 algorithm, which works.
    """
    import math

    import shapely
    from aws.osml.photogrammetry import GeodeticWorldCoordinate

    roi = shapely.from_wkt(roi_wkt)
    polygons = list(roi.geoms) if hasattr(roi, "geoms") else [roi]
    projected = []
    for polygon in polygons:
        ring = []
        for lon, lat, *rest in polygon.exterior.coords:
            world = GeodeticWorldCoordinate([math.radians(lon), math.radians(lat), rest[0] if rest else 0.0])
            image = sensor_model.world_to_image(world)
            ring.append((image.x, image.y))
        projected.append(shapely.Polygon(ring).buffer(0))
    area = shapely.union_all(projected).intersection(shapely.box(0, 0, width, height))
    if area.is_empty:
        return None
    minx, miny, maxx, maxy = area.bounds
    return round(minx), round(miny), round(maxx), round(maxy)
