"""Sensor models beyond the affine one, through osml-imagery-toolkit.

- RPCs that GDAL reads from GeoTIFF tags or ``.RPB`` side files (``dataset.rpcs`` in rasterio): the toolkit
  ignores them, we build its ``RPCSensorModel`` ourselves; no ``osgeo`` needed.
- NITF metadata (RPC00B, RSM, ICHIPB chips, CSCRNA corners, SICD / SIDD XML DES): the toolkit's builders
  import the GDAL Python bindings, so these need the ``[gdal]`` extra (``osgeo``); without it we fall back
  to the affine model and say so once.
"""

from __future__ import annotations

import functools
import logging
import xml.etree.ElementTree as ET

log = logging.getLogger(__name__)


@functools.cache
def has_osgeo() -> bool:
    """True when the GDAL Python bindings (the ``[gdal]`` extra) can be imported."""
    try:
        from osgeo import gdal  # noqa: F401
    except ImportError:
        log.info("GDAL Python bindings (osgeo) not installed: RPC00B/RSM/SICD/SIDD NITF models unavailable")
        return False
    return True


def rpc_sensor_model(rpcs):
    """An ``RPCSensorModel`` from rasterio's ``RPC`` (GeoTIFF RPC tags, ``.RPB``/``_rpc.txt`` files, NITF RPC00B)."""
    from aws.osml.photogrammetry import RPCPolynomial, RPCSensorModel

    # GDAL's RPC domain keeps the RPC00B coefficient order, which is what the toolkit expects
    return RefinedSensorModel(RPCSensorModel(
        float(rpcs.err_bias or 0.0), float(rpcs.err_rand or 0.0),
        rpcs.line_off, rpcs.samp_off, rpcs.lat_off, rpcs.long_off, rpcs.height_off,
        rpcs.line_scale, rpcs.samp_scale, rpcs.lat_scale, rpcs.long_scale, rpcs.height_scale,
        RPCPolynomial(list(rpcs.line_num_coeff)), RPCPolynomial(list(rpcs.line_den_coeff)),
        RPCPolynomial(list(rpcs.samp_num_coeff)), RPCPolynomial(list(rpcs.samp_den_coeff)),
    ))


class RefinedSensorModel:
    """A precision model whose ``image_to_world`` is polished with Newton steps on its own ``world_to_image``.

    The toolkit's iterative image -> world solvers stop at a few hundredths of a pixel; RPC, RSM and SICD
    ``world_to_image`` are direct, so a few steps on lon/lat (height kept) make the round trip exact.
    """

    def __init__(self, model, tolerance_px: float = 1e-4, max_steps: int = 5) -> None:
        self.model, self.tolerance_px, self.max_steps = model, tolerance_px, max_steps

    def __getattr__(self, name):
        return getattr(self.model, name)

    def world_to_image(self, world):
        return self.model.world_to_image(world)

    def image_to_world(self, image, elevation_model=None, options=None):
        import numpy as np
        from aws.osml.photogrammetry import GeodeticWorldCoordinate

        world = self.model.image_to_world(image, elevation_model=elevation_model, options=options)
        lon, lat, height = world.longitude, world.latitude, world.elevation
        target = np.array([image.x, image.y])
        step = 1e-7  # radians, ~0.6 m: small against any pixel of these sensors, large against float noise

        def project(lon_, lat_):
            p = self.model.world_to_image(GeodeticWorldCoordinate([lon_, lat_, height]))
            return np.array([p.x, p.y])

        for _ in range(self.max_steps):
            here = project(lon, lat)
            error = target - here
            if np.hypot(*error) < self.tolerance_px:
                break
            jacobian = np.column_stack([(project(lon + step, lat) - here) / step,
                                        (project(lon, lat + step) - here) / step])
            dlon, dlat = np.linalg.solve(jacobian, error)
            lon, lat = lon + dlon, lat + dlat
        return GeodeticWorldCoordinate([lon, lat, height])


def refined(model):
    """Wrap precision models (RPC, RSM, SICD, SIDD, chipped, composite); leave affine/projective ones alone."""
    if model is None or type(model).__name__ in ("GDALAffineSensorModel", "ProjectiveSensorModel"):
        return model
    return RefinedSensorModel(model)


def from_nitf_metadata(
    width: int,
    height: int,
    *,
    xml_tres: str | None = None,
    xml_dess: list[str] | None = None,
    geo_transform: list[float] | None = None,
    proj_wkt: str | None = None,
):
    """osml's own choice of model (spec 4.2) from NITF TRE / DES XML: RSM or RPC (chipped by ICHIPB),
    CSCRNA projective, SICD / SIDD, composite with the affine one. Needs ``osgeo``; None if nothing usable."""
    from aws.osml.gdal.sensor_model_factory import SensorModelFactory

    factory = SensorModelFactory(
        width,
        height,
        xml_tres=ET.fromstring(xml_tres) if xml_tres else None,
        xml_dess=xml_dess or None,
        geo_transform=geo_transform,
        proj_wkt=proj_wkt,
    )
    return refined(factory.build())


def from_sicd_xml(xml: str):
    """A SICD (complex SAR) sensor model from SICD XML (1.2.1 / 1.3.0). Needs ``osgeo`` (toolkit import)."""
    from aws.osml.gdal.sicd_sensor_model_builder import SICDSensorModelBuilder

    return refined(SICDSensorModelBuilder(sicd_xml=xml).build())


def from_sidd_xml(xml: str):
    """A SIDD (derived SAR) sensor model from SIDD XML. Needs ``osgeo`` (toolkit import)."""
    from aws.osml.gdal.sidd_sensor_model_builder import SIDDSensorModelBuilder

    return refined(SIDDSensorModelBuilder(sidd_xml=xml).build())


def nitf_metadata_model(path: str, width: int, height: int, geo_transform, proj_wkt):
    """The toolkit's model for a local NITF, read through osgeo's ``xml:TRE`` / ``xml:DES`` domains, or None.

    Only for local files: remote NITFs would need osgeo's own /vsis3/ credentials; they keep the affine model.
    """
    if not has_osgeo():
        return None
    from osgeo import gdal

    dataset = gdal.Open(path)  # None (and a GDAL warning) when it cannot: rasterio already opened it
    if dataset is None:
        return None
    tres, dess = dataset.GetMetadata("xml:TRE"), dataset.GetMetadata("xml:DES")
    dataset = None  # close
    if not tres and not dess:
        return None
    return from_nitf_metadata(
        width, height, xml_tres=tres[0] if tres else None, xml_dess=dess or None,
        geo_transform=geo_transform, proj_wkt=proj_wkt,
    )
