"""Result sinks: where the selected FeatureCollection of an image goes."""

from __future__ import annotations

from airflow_provider_osml.sinks.file import FileSink
from airflow_provider_osml.sinks.s3 import S3Sink

SINK_TYPES = {"File": FileSink, "S3": S3Sink}


class SinkError(RuntimeError):
    """A sink could not deliver the features."""


def create_sink(output: dict, *, aws_conn_id: str | None = "aws_default"):
    """Build the sink for one validated ``outputs`` entry."""
    sink_type = output["type"]
    if sink_type == "File":
        return FileSink(path=output["path"])
    if sink_type == "S3":
        return S3Sink(
            bucket=output["bucket"], prefix=output.get("prefix", ""), role=output.get("role"), aws_conn_id=aws_conn_id
        )
    raise SinkError(f"outputs: sink type {sink_type!r} is not available yet (File and S3 are)")
