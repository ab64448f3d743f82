"""Sensor models from the shared metadata fixtures and from GeoTIFF RPCs: image -> world -> image round trips."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.rpc import RPC

from airflow_provider_osml import imagery, sensor_models

needs_osgeo = pytest.mark.skipif(
    not sensor_models.has_osgeo(),
    reason="GDAL Python bindings (osgeo) not installed: install the [gdal] extra (scripts/bootstrap.sh does)",
)


def round_trip_error(model, width: float, height: float, elevation_model=None) -> float:
    """Largest pixel error of image -> world -> image over a 5x5 grid covering the image."""
    from aws.osml.photogrammetry import ImageCoordinate

    worst = 0.0
    for x in np.linspace(0.05 * width, 0.95 * width, 5):
        for y in np.linspace(0.05 * height, 0.95 * height, 5):
            world = model.image_to_world(ImageCoordinate([x, y]), elevation_model=elevation_model)
            back = model.world_to_image(world)
            worst = max(worst, math.hypot(back.x - x, back.y - y))
    return worst


def metadata(fixtures_dir, name: str) -> str:
    return (fixtures_dir / "metadata" / name).read_text()


@needs_osgeo
@pytest.mark.parametrize(
    ("name", "size", "model_type"),
    [
        pytest.param("sample-metadata-ms-rpc00b.xml", (8820, 5212), "CompositeSensorModel", id="rpc00b+cscrna"),
        pytest.param("sample-metadata-rpc00b-ichipb.xml", (2048, 2048), "ChippedImageSensorModel", id="rpc00b-ichipb"),
        pytest.param("i_6130a_truncated_tres.xml", (9122, 9292), "RSMPolynomialSensorModel", id="rsm"),
    ],
)
def test_nitf_tre_models_round_trip(fixtures_dir, name, size, model_type):
    model = sensor_models.from_nitf_metadata(*size, xml_tres=metadata(fixtures_dir, name))
    assert type(model.model).__name__ == model_type
    assert round_trip_error(model, *size) < 0.01


@needs_osgeo
def test_sicd_model_round_trips(fixtures_dir):
    model = sensor_models.from_sicd_xml(metadata(fixtures_dir, "example.sicd121.capella.xml"))
    assert type(model.model).__name__ == "SICDSensorModel"
    assert round_trip_error(model, 19083, 5388) < 0.01


@needs_osgeo
def test_sidd_model_round_trips(fixtures_dir):
    xml = metadata(fixtures_dir, "example.sidd.xml")
    model = sensor_models.from_sidd_xml(xml)
    assert model is not None
    root = ET.fromstring(xml)
    ns = {"s": root.tag[1:].split("}")[0]}
    footprint = root.find(".//s:Measurement/s:PixelFootprint", ns)
    rows, cols = (int(child.text) for child in footprint)
    assert round_trip_error(model, cols, rows) < 0.01


def rpc_from_tre(xml: str) -> RPC:
    """rasterio's RPC from an RPC00B TRE in GDAL's xml:TRE form, parsed here without osgeo."""
    tre = ET.fromstring(xml).find("./tre[@name='RPC00B']")
    value = {f.get("name"): float(f.get("value")) for f in tre.findall("./field")}

    def coeffs(name):
        return [float(f.get("value")) for f in tre.findall(f"./repeated[@name='{name}']/group/field")]

    return RPC(
        height_off=value["HEIGHT_OFF"], height_scale=value["HEIGHT_SCALE"], lat_off=value["LAT_OFF"],
        lat_scale=value["LAT_SCALE"], long_off=value["LONG_OFF"], long_scale=value["LONG_SCALE"],
        line_off=value["LINE_OFF"], line_scale=value["LINE_SCALE"], samp_off=value["SAMP_OFF"],
        samp_scale=value["SAMP_SCALE"], err_bias=value["ERR_BIAS"], err_rand=value["ERR_RAND"],
        line_num_coeff=coeffs("LINE_NUM_COEFF"), line_den_coeff=coeffs("LINE_DEN_COEFF"),
        samp_num_coeff=coeffs("SAMP_NUM_COEFF"), samp_den_coeff=coeffs("SAMP_DEN_COEFF"),
    )


@pytest.mark.parametrize("side_file", [False, True], ids=["geotiff-tags", "rpb-file"])
def test_geotiff_rpcs_give_an_rpc_model_that_agrees_with_gdal(tmp_path, fixtures_dir, side_file):
    """osml ignores GeoTIFF RPCs (stack notes 2.3); we build the model and check it against GDAL's own."""
    from aws.osml.photogrammetry import ImageCoordinate
    from rasterio.transform import RPCTransformer

    rpcs = rpc_from_tre(metadata(fixtures_dir, "sample-metadata-ms-rpc00b.xml"))
    path = tmp_path / "rpc.tif"
    options = {"PROFILE": "BASELINE", "RPB": "YES"} if side_file else {}
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       rpcs=rpcs, **options) as dataset:
        dataset.write(np.zeros((1, 64, 64), dtype=np.uint8))
    assert (tmp_path / "rpc.RPB").exists() == side_file
    with imagery.open_image(str(path)) as dataset:
        model = imagery.build_sensor_model(dataset)
    assert type(model.model).__name__ == "RPCSensorModel"
    assert round_trip_error(model, 8820, 5212) < 0.01
    with RPCTransformer(rpcs) as gdal_rpc:
        for x, y in [(100.5, 200.5), (4409.0, 2606.0), (8000.25, 5000.75)]:
            world = model.image_to_world(ImageCoordinate([x, y]))
            # the same ground point, through GDAL's RPC transformer at the same height
            row, col = gdal_rpc.rowcol(math.degrees(world.longitude), math.degrees(world.latitude),
                                       zs=world.elevation, op=lambda v: v)
            # GDAL puts RPC sample 0 at the centre of the first pixel (+0.5); the toolkit, and so osml, uses
            # RPC coordinates as they are. We keep osml's convention: the two differ by exactly half a pixel.
            assert abs(col - (x + 0.5)) < 0.01 and abs(row - (y + 0.5)) < 0.01


@needs_osgeo
def test_srtm_elevation_model_gives_the_dem_height(fixtures_dir):
    """``ELEVATION_DATA_LOCATION`` = the fixtures folder, version 3arc_v2: heights come from n47_e034_3arc_v2.tif."""
    from aws.osml.photogrammetry import GeodeticWorldCoordinate

    from airflow_provider_osml.elevation import elevation_model

    dem = elevation_model(str(fixtures_dir), "3arc_v2", ".tif")
    with rasterio.open(fixtures_dir / "n47_e034_3arc_v2.tif") as dataset:
        heights = dataset.read(1)
        transform = dataset.transform
    for row, col in [(600, 600), (100, 1000), (1000, 150)]:
        lon, lat = transform @ (col + 0.5, row + 0.5)  # pixel centres: no interpolation between posts
        point = GeodeticWorldCoordinate([math.radians(lon), math.radians(lat), 0.0])
        dem.set_elevation(point)
        assert point.elevation == pytest.approx(float(heights[row, col]), abs=1.0)
    assert elevation_model(None) is None


def test_roi_maps_to_pixels_through_an_rpc_model(tmp_path, fixtures_dir):
    """spec 2.4 through a precision model: a lon/lat/height ROI drawn over known pixels comes back as them."""
    from aws.osml.photogrammetry import ImageCoordinate

    model = sensor_models.rpc_sensor_model(rpc_from_tre(metadata(fixtures_dir, "sample-metadata-ms-rpc00b.xml")))
    minx, miny, maxx, maxy = 1000, 1500, 3000, 2600
    ring = []
    for x, y in [(minx, miny), (maxx, miny), (maxx, maxy), (minx, maxy), (minx, miny)]:
        world = model.image_to_world(ImageCoordinate([x, y]))
        ring.append(f"{math.degrees(world.longitude)!r} {math.degrees(world.latitude)!r} {world.elevation!r}")
    bounds = imagery.roi_pixel_bounds(f"POLYGON Z (({', '.join(ring)}))", model, 8820, 5212)
    assert bounds == (minx, miny, maxx, maxy)
