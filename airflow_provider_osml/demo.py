"""A generated georeferenced scene with bright objects, many of them across tile seams."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


@dataclass(frozen=True)
class DemoScene:
    path: Path
    width: int
    height: int
    objects: list[tuple[float, float, float]]  # (cx, cy, radius) in pixels
    seam_objects: int
    tile_size: int = 512
    tile_overlap: int = 64
    region_size: int = 1024
    threshold: float = 128.0

    def request(self, model_url: str, outputs: list[dict], job_id: str, tile_format: str = "PNG") -> dict:
        """An ImageRequest for this scene, tiled as it was designed, sent to the HTTP model at ``model_url``."""
        return {
            "jobId": job_id,
            "imageUrls": [str(self.path)],
            "imageProcessor": {"name": model_url, "type": "HTTP_ENDPOINT"},
            "imageProcessorTileSize": self.tile_size,
            "imageProcessorTileOverlap": self.tile_overlap,
            "imageProcessorTileFormat": tile_format,
            "regionSize": self.region_size,
            "outputs": outputs,
        }


def make_demo_scene(directory: Path, *, width: int = 2048, height: int = 1536, seed: int = 7) -> DemoScene:
    """Write a 3-band UTM GeoTIFF: dark noise with bright discs on a jittered grid (discs never touch)."""
    from airflow_provider_osml.tiling import plan_image

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(10, 50, size=(3, height, width), dtype=np.uint8)
    cell, margin = 80, 6
    yy, xx = np.mgrid[0:height, 0:width]
    objects = []
    for top in range(margin, height - cell, cell):
        for left in range(margin, width - cell, cell):
            if rng.random() < 0.3:
                continue
            radius = float(rng.integers(6, 18))
            cx = left + radius + margin + rng.random() * (cell - 2 * (radius + margin))
            cy = top + radius + margin + rng.random() * (cell - 2 * (radius + margin))
            window = (slice(int(cy - radius - 1), int(cy + radius + 2)), slice(int(cx - radius - 1), int(cx + radius + 2)))
            disc = (xx[window] - cx) ** 2 + (yy[window] - cy) ** 2 <= radius**2
            brightness = rng.integers(180, 250)
            for band in range(3):
                pixels[band][window][disc] = brightness
            objects.append((cx, cy, radius))
    scene = DemoScene(directory / "scene.tif", width, height, objects, 0)
    plan = plan_image(width, height, tile_size=scene.tile_size, tile_overlap=scene.tile_overlap,
                      region_size=scene.region_size)
    edges_x = {c + w for (_, c), (w, _) in plan.all_tiles()} | {c for (_, c), _ in plan.all_tiles()}
    edges_y = {r + h for (r, _), (_, h) in plan.all_tiles()} | {r for (r, _), _ in plan.all_tiles()}
    seams = sum(
        any(cx - r < e < cx + r for e in edges_x) or any(cy - r < e < cy + r for e in edges_y)
        for cx, cy, r in objects
    )
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": from_origin(500000.0, 5300000.0, 0.5, 0.5),
        "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    with rasterio.open(scene.path, "w", **profile) as dataset:
        dataset.write(pixels)
    return DemoScene(scene.path, width, height, objects, seams)
