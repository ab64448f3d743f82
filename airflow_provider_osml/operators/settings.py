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
    # issue 4: model endpoints
    endpoint_pool_size: int = 8
    tile_attempts: int = 3
    tile_retry_delay: float = 1.0
    model_ca_bundle: str | None = None
    model_allowed_hosts: tuple[str, ...] = ()
    model_allow_link_local: bool = False
    region_checkpoint_seconds: float = 30.0
    # issue 7: task placement (read when the DAG is parsed: set them on the dag-processor and scheduler too)
    inference_queue: str | None = None
    inference_executor: str | None = None
    inference_pod_override: str | None = None
    inference_gpus: str | None = None
    inference_cpu: str | None = None
    inference_memory: str | None = None
    inference_node_selector: str | None = None
    inference_tolerations: str | None = None
    # issue 6: status notifications
    status_topic_arn: str | None = None
    # issue 3: imagery and elevation
    elevation_data_location: str | None = None
    elevation_data_version: str = "1arc_v3"
    elevation_data_extension: str = ".tif"

    @property
    def tls_verify(self) -> bool | str:
        """What ``requests`` takes as ``verify``: a CA bundle path when configured, else the on/off switch."""
        return self.model_ca_bundle or self.verify_tls


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
        # issue 4: model endpoints
        endpoint_pool_size=int(_setting("endpoint_pool_size", "8")),
        tile_attempts=max(1, int(_setting("tile_attempts", "3"))),
        tile_retry_delay=float(_setting("tile_retry_delay", "1")),
        model_ca_bundle=_setting("model_ca_bundle"),
        model_allowed_hosts=tuple(
            h.strip().lower() for h in (_setting("model_allowed_hosts", "") or "").split(",") if h.strip()
        ),
        model_allow_link_local=(_setting("model_allow_link_local", "false") or "").lower() in ("1", "true", "yes"),
        region_checkpoint_seconds=float(_setting("region_checkpoint_seconds", "30")),
        # issue 7: task placement
        inference_queue=_setting("inference_queue"),
        inference_executor=_setting("inference_executor"),
        inference_pod_override=_setting("inference_pod_override"),
        inference_gpus=_setting("inference_gpus"),
        inference_cpu=_setting("inference_cpu"),
        inference_memory=_setting("inference_memory"),
        inference_node_selector=_setting("inference_node_selector"),
        inference_tolerations=_setting("inference_tolerations"),
        # issue 6: status notifications
        status_topic_arn=_setting("status_topic_arn"),
        # issue 3: imagery and elevation
        elevation_data_location=_setting("elevation_data_location"),
        elevation_data_version=_setting("elevation_data_version", "1arc_v3"),
        elevation_data_extension=_setting("elevation_data_extension", ".tif"),
    )
