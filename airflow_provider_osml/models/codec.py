"""Decode/encode raw tile bytes with GDAL (rasterio), as the SageMaker model containers do."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

# Tiles sent to a model are plain pixels: no geotransform is expected.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)

# Image formats only: formats such as VRT could make GDAL read local files or URLs named in the payload.
ALLOWED_DRIVERS: tuple[str, ...] = (
    "GTiff",
    "NITF",
    "PNG",
    "JPEG",
    "JP2OpenJPEG",
    "GIF",
    "BMP",
    "WEBP",
    "PNM",
)

# Guards against decompression bombs (a small PNG header claiming a huge raster).
MAX_SAMPLES = 1 << 28


class TileDecodeError(ValueError):
    """The payload is not an image GDAL can read."""


def decode_tile(
    data: bytes,
    drivers: Sequence[str] | None = ALLOWED_DRIVERS,
    max_samples: int = MAX_SAMPLES,
) -> np.ndarray:
    """Decode encoded tile bytes (GTiff, NITF, PNG, JPEG, ...) into a (bands, h, w) array."""
    if not data:
        raise TileDecodeError("empty payload")
    try:
        with MemoryFile(bytes(data)) as memfile:
            with memfile.open(driver=list(drivers) if drivers else None) as dataset:
                samples = dataset.count * dataset.width * dataset.height
                if samples > max_samples:
                    raise TileDecodeError(f"tile too large: {samples} samples > {max_samples}")
                return dataset.read()
    except TileDecodeError:
        raise
    except Exception as err:  # GDAL reports unreadable bytes in several ways
        raise TileDecodeError(str(err)) from err


def encode_tile(image: np.ndarray, driver: str = "GTiff", **creation_options: object) -> bytes:
    """Encode a (bands, h, w) or (h, w) array as image bytes (GTiff, PNG, JPEG, NITF, ...)."""
    array = image[np.newaxis] if image.ndim == 2 else image
    count, height, width = array.shape
    with MemoryFile() as memfile:
        with memfile.open(
            driver=driver,
            width=width,
            height=height,
            count=count,
            dtype=array.dtype.name,
            **creation_options,
        ) as dataset:
            dataset.write(array)
        return memfile.read()
