"""``{"type": "File", "path", "format"}``: ``<path>/<jobId>.<ext>`` on a local or mounted file system.

``format`` is ``GeoJSON`` (default: one FeatureCollection, as the S3 sink writes) or ``GeoJSONSeq``
(one feature per line, RFC 8142 without the record separators, as GDAL's GeoJSONSeq driver writes ``.geojsonl``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from airflow_provider_osml.sinks.feature_stream import iter_features

FILE_FORMATS = {"GeoJSON": "geojson", "GeoJSONSeq": "geojsonl"}


class FileSink:
    def __init__(self, *, path: str, format: str = "GeoJSON") -> None:
        if format not in FILE_FORMATS:
            raise ValueError(f"format: {format!r} is not one of {', '.join(FILE_FORMATS)}")
        self.path = Path(path)
        self.format = format

    def target(self, job_id: str) -> str:
        return str(self.path / f"{job_id}.{FILE_FORMATS[self.format]}")

    def write(self, job_id: str, geojson_file: str) -> str:
        """Write the features into place atomically (write, then rename); a re-run overwrites the file."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.target(job_id)
        partial = f"{target}.partial-{os.getpid()}"
        try:
            if self.format == "GeoJSON":
                shutil.copyfile(geojson_file, partial)
            else:
                with open(partial, "w", encoding="utf-8") as out:
                    for feature in iter_features(geojson_file):
                        out.write(json.dumps(feature) + "\n")
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
        return target
