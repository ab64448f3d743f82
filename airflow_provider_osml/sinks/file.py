"""``{"type": "File", "path": ...}``: ``<path>/<jobId>.geojson`` on a local or mounted file system."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


class FileSink:
    def __init__(self, *, path: str) -> None:
        self.path = Path(path)

    def target(self, job_id: str) -> str:
        return str(self.path / f"{job_id}.geojson")

    def write(self, job_id: str, geojson_file: str) -> str:
        """Copy the finished FeatureCollection into place atomically; a re-run overwrites it."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.target(job_id)
        partial = f"{target}.partial-{os.getpid()}"
        shutil.copyfile(geojson_file, partial)
        os.replace(partial, target)
        return target
