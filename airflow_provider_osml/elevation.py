"""Optional elevation model (SRTM tile sets in a directory or ``s3://`` prefix), as osml-model-runner builds it.

``ELEVATION_DATA_LOCATION`` / ``ELEVATION_DATA_VERSION`` / ``ELEVATION_DATA_EXTENSION`` deployment settings
(spec 4.2). The toolkit reads the tiles through osgeo, so this needs the ``[gdal]`` extra.
"""

from __future__ import annotations

import functools


@functools.cache
def elevation_model(location: str | None, version: str = "1arc_v3", extension: str = ".tif"):
    """The DEM for ``location``, or None when no location is configured (the sensor model's default height)."""
    if not location:
        return None
    from airflow_provider_osml.sensor_models import has_osgeo

    if not has_osgeo():
        raise RuntimeError(
            "ELEVATION_DATA_LOCATION is set but the GDAL Python bindings are missing: install the [gdal] extra"
        )
    from aws.osml.gdal.gdal_dem_tile_factory import GDALDigitalElevationModelTileFactory
    from aws.osml.photogrammetry import DigitalElevationModel, SRTMTileSet

    return DigitalElevationModel(
        SRTMTileSet(version=version, format_extension=extension),
        GDALDigitalElevationModelTileFactory(location.rstrip("/") + "/"),
    )
