"""``geolocate_region``: tile detections in image pixels -> lon/lat through the image's sensor model."""

from __future__ import annotations

import logging

from airflow_provider_osml import features as feats
from airflow_provider_osml import imagery
from airflow_provider_osml.elevation import elevation_model
from airflow_provider_osml.operators.context import TaskContext, open_request_image

log = logging.getLogger(__name__)


# --- geolocate_region ------------------------------------------------------------------------------


def geolocate_region(validated: dict, inference: dict) -> dict:
    """Geolocate a region's features, one Geolocator call per tile as osml does."""
    ctx = TaskContext.from_validated(validated)
    stored = ctx.store.read_json(f"inference/{inference['key']}.json")
    with open_request_image(ctx) as dataset:
        sensor_model = imagery.build_sensor_model(dataset)
    if sensor_model is None:
        log.warning("Image %s has no georeferencing: features keep pixel geometry only", ctx.request.image_url)
    settings = ctx.settings
    dem = elevation_model(settings.elevation_data_location, settings.elevation_data_version,
                          settings.elevation_data_extension)
    located = []
    for tile in stored["tiles"]:
        feats.geolocate_tile_features(tile["features"], sensor_model, dem)
        located.extend(tile["features"])
    ctx.store.write_json(
        f"geolocated/{inference['key']}.json", {"features": located, "failedTiles": stored["failedTiles"]}
    )
    return {**inference, "geolocated": sensor_model is not None}
