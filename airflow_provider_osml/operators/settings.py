"""Deployment settings: ``[osml]`` Airflow options, read as ``AIRFLOW__OSML__<KEY>`` or ``OSML_<KEY>``.

Environment variables work the same on a laptop, on Celery workers, in Kubernetes pods and on MWAA
(whose "Airflow configuration options" become ``AIRFLOW__SECTION__KEY`` variables).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _setting(key: str, default: str | None = None) -> str | None:
    for name in (f"AIRFLOW__OSML__{key.upper()}", f"OSML_{key.upper()}"):
        if os.environ.get(name):
            return os.environ[name]
    return default


@dataclass(frozen=True)
class DeploymentSettings:
    work_store: str
    region_size: int
    tile_workers: int
    max_regions: int
    allowed_roots: tuple[str, ...]
    aws_conn_id: str | None
    model_connect_timeout: float
    model_read_timeout: float
    model_retries: int
    verify_tls: bool
    # issue 3: imagery and elevation
    elevation_data_location: str | None = None
    elevation_data_version: str = "1arc_v3"
    elevation_data_extension: str = ".tif"


def load_settings() -> DeploymentSettings:
    airflow_home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    roots = _setting("allowed_roots", "") or ""
    return DeploymentSettings(
        work_store=_setting("work_store") or f"file://{os.path.join(airflow_home, 'osml-work')}",
        region_size=int(_setting("region_size", "10240")),
        tile_workers=int(_setting("tile_workers", "4")),
        max_regions=int(_setting("max_regions", "1024")),
        allowed_roots=tuple(r for r in roots.split(os.pathsep) if r),
        aws_conn_id=_setting("aws_conn_id", "aws_default"),
        model_connect_timeout=float(_setting("model_connect_timeout", "10")),
        model_read_timeout=float(_setting("model_read_timeout", "60")),
        model_retries=int(_setting("model_retries", "3")),
        verify_tls=(_setting("verify_tls", "true") or "true").lower() not in ("0", "false", "no"),
        # issue 3: imagery and elevation
        elevation_data_location=_setting("elevation_data_location"),
        elevation_data_version=_setting("elevation_data_version", "1arc_v3"),
        elevation_data_extension=_setting("elevation_data_extension", ".tif"),
    )
